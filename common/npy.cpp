#include "common/npy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "shmgemm/error.hpp"

namespace shmgemm {
namespace {

constexpr std::string_view kMagic{"\x93NUMPY", 6};

[[noreturn]] void fail(std::string_view what, std::string_view why) {
  throw Error(ErrorCode::bad_file, fmt::format("{}: {}", escaped(what), why));
}

[[noreturn]] void unsupported(std::string_view what, std::string_view why) {
  throw Error(ErrorCode::unsupported, fmt::format("{}: {}", escaped(what), why));
}

// numpy's name for a descr's kind and (validated, decimal) size, for messages about dtypes
// shmgemm does not take.
std::string numpy_type_name(char kind, std::string_view size) {
  const int bits = 8 * std::stoi(std::string(size));
  switch (kind) {
    case 'b':
      return "bool";
    case 'i':
      return fmt::format("int{}", bits);
    case 'u':
      return fmt::format("uint{}", bits);
    case 'f':
      return fmt::format("float{}", bits);
    case 'c':
      return fmt::format("complex{}", bits);
    case 'U':
      return "str";
    case 'S':
      return "bytes";
    case 'V':
      return "void";
    case 'M':
      return "datetime64";
    case 'm':
      return "timedelta64";
    default:
      return fmt::format("kind '{}'", kind);
  }
}

// Maps a descr such as "<f8" onto a DType, or throws naming what is wrong with it.
DType dtype_from_descr(std::string_view raw, std::string_view what) {
  const std::string descr = escaped(raw);  // quoted in messages: one line, whatever it holds
  if (raw.size() < 2) fail(what, fmt::format("malformed dtype descr '{}'", descr));
  // numpy also reads a descr without its byte-order character ('f8'): the native order.
  const bool has_order = !std::isalpha(static_cast<unsigned char>(raw[0]));
  const char order = has_order ? raw[0] : '=';
  const char kind = has_order ? raw[1] : raw[0];
  const std::string_view size = raw.substr(has_order ? 2 : 1);
  if (kind == 'O')
    unsupported(what, fmt::format("object arrays are not supported (dtype 'O'); supported: {}",
                                  supported_dtypes()));
  if (order != '<' && order != '>' && order != '|' && order != '=')
    fail(what, fmt::format("malformed dtype descr '{}'", descr));
  if (size.empty() || size.size() > 2 ||
      !std::all_of(size.begin(), size.end(), [](char c) { return std::isdigit(c) != 0; }))
    fail(what, fmt::format("malformed dtype descr '{}'", descr));
  const std::string name = numpy_type_name(kind, size);
  if (order == '>' && size != "1")
    unsupported(what, fmt::format("big-endian {} ('{}') is not supported; convert it with "
                                  "arr.astype('<{}{}')",
                                  name, descr, kind, size));
  for (DType d : all_dtypes()) {
    const std::string_view ours = npy_descr(d);
    if (ours[1] == kind && ours.substr(2) == size) return d;
  }
  unsupported(what, fmt::format("unsupported dtype {} ('{}'); supported: {}", name, descr,
                                supported_dtypes()));
}

// A strict reader for the one Python literal numpy writes:
//   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
class HeaderDictParser {
 public:
  HeaderDictParser(std::string_view text, std::string_view what) : s_(text), what_(what) {}

  void parse(NpyHeader& h) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    skip_ws();
    while (!consume('}')) {
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr" && !have_descr) {
        if (peek() == '[') unsupported(what_, "structured dtypes are not supported");
        h.dtype = dtype_from_descr(parse_string(), what_);
        have_descr = true;
      } else if (key == "fortran_order" && !have_order) {
        h.fortran_order = parse_bool();
        have_order = true;
      } else if (key == "shape" && !have_shape) {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        bad(fmt::format("unexpected or repeated key '{}'", escaped(key)));
      }
      skip_ws();
      if (!consume(',')) {
        expect('}');
        break;
      }
      skip_ws();
    }
    if (!have_descr || !have_order || !have_shape)
      bad("header lacks one of 'descr', 'fortran_order', 'shape'");
    // Only the padding may follow the dict.
    skip_ws();
    if (pos_ != s_.size()) bad("trailing characters after the header dict");
  }

 private:
  [[noreturn]] void bad(std::string_view why) {
    fail(what_, fmt::format("malformed .npy header: {}", why));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(char c) {
    if (pos_ >= s_.size() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) bad(fmt::format("expected '{}' at offset {}", c, pos_));
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad(fmt::format("expected a string at offset {}", pos_));
    ++pos_;
    const std::size_t end = s_.find(quote, pos_);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(pos_, end - pos_));
    if (out.find('\\') != std::string::npos) bad("escapes in strings are not supported");
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad("'fortran_order' is not True or False");
  }
  std::uint64_t parse_uint() {
    if (!std::isdigit(static_cast<unsigned char>(peek())))
      bad(fmt::format("expected a non-negative integer in 'shape' at offset {}", pos_));
    std::uint64_t v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      const std::uint64_t digit = static_cast<std::uint64_t>(s_[pos_++] - '0');
      if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, digit, &v))
        bad("a dimension in 'shape' overflows 64 bits");
    }
    consume('L');  // Python 2 longs, as numpy still accepts
    return v;
  }
  std::vector<std::uint64_t> parse_shape() {
    std::vector<std::uint64_t> shape;
    expect('(');
    skip_ws();
    if (consume(')')) return shape;
    for (;;) {
      shape.push_back(parse_uint());
      if (shape.size() > kMaxNpyDims) bad(fmt::format("more than {} dimensions", kMaxNpyDims));
      skip_ws();
      const bool comma = consume(',');
      skip_ws();
      if (consume(')')) {
        // (5) is the number 5 in Python, not a tuple.
        if (shape.size() == 1 && !comma) bad("'shape' is not a tuple");
        return shape;
      }
      if (!comma) bad(fmt::format("expected ',' or ')' in 'shape' at offset {}", pos_));
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::string_view what_;
};

std::uint32_t read_le(std::string_view bytes, std::size_t at, std::size_t width) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < width; ++i)
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

}  // namespace

NpyHeader parse_npy_header(std::string_view bytes, std::string_view what) {
  if (bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
    // The command with the file's own name, where it quotes as it is in both shell and Python.
    const bool plain = !what.empty() && what.find_first_of("'\"$`\\\n") == std::string_view::npos;
    const std::string archive = plain ? std::string(what) : std::string("F.npz");
    std::string array = archive;
    if (const std::size_t dot = array.rfind('.');
        dot != std::string::npos && array.find('/', dot) == std::string::npos)
      array.erase(dot);
    fail(what, fmt::format("a .npz archive (np.savez: a zip of arrays), not a .npy file; extract "
                           "one array with python3 -c \"import numpy as np; z = np.load('{}'); "
                           "np.save('{}.npy', z[z.files[0]])\"",
                           archive, array));
  }
  if (bytes.size() < kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic)
    fail(what, "not a .npy file (no \\x93NUMPY magic)");
  if (bytes.size() < 10) fail(what, "truncated .npy header");
  NpyHeader h;
  h.major = static_cast<std::uint8_t>(bytes[6]);
  h.minor = static_cast<std::uint8_t>(bytes[7]);
  if (h.major < 1 || h.major > 3 || h.minor != 0)
    unsupported(what, fmt::format("unsupported .npy format version {}.{} (reads 1.0, 2.0, 3.0)",
                                  h.major, h.minor));
  // Version 1.0 has a 2-byte header length; 2.0 and 3.0 (UTF-8 text) a 4-byte one.
  const std::size_t len_width = h.major == 1 ? 2 : 4;
  const std::size_t preamble = 8 + len_width;
  if (bytes.size() < preamble) fail(what, "truncated .npy header");
  const std::uint32_t header_len = read_le(bytes, 8, len_width);
  if (header_len > kMaxNpyHeaderBytes)
    fail(what, fmt::format(".npy header of {} bytes exceeds the {}-byte limit", header_len,
                           kMaxNpyHeaderBytes));
  if (bytes.size() < preamble + header_len)
    fail(what, fmt::format("truncated .npy header: {} bytes announced, {} present", header_len,
                           bytes.size() - preamble));
  HeaderDictParser(bytes.substr(preamble, header_len), what).parse(h);
  h.data_offset = preamble + header_len;

  h.element_count = 1;
  for (std::uint64_t d : h.shape)
    if (__builtin_mul_overflow(h.element_count, d, &h.element_count))
      fail(what,
           fmt::format("shape {} has more elements than 64 bits can count", shape_string(h.shape)));
  if (__builtin_mul_overflow(h.element_count, item_size(h.dtype), &h.data_bytes) ||
      h.data_bytes > UINT64_MAX - h.data_offset)
    fail(what, fmt::format("shape {} of {} takes more bytes than 64 bits can count",
                           shape_string(h.shape), dtype_name(h.dtype)));
  return h;
}

std::string format_npy_header(DType dtype, std::span<const std::uint64_t> shape,
                              bool fortran_order) {
  std::string shape_repr = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    shape_repr += fmt::format("{}{}", i ? ", " : "", shape[i]);
  shape_repr += shape.size() == 1 ? ",)" : ")";
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
                                 npy_descr(dtype), fortran_order ? "True" : "False", shape_repr);

  // Pad with spaces so that preamble + dict + '\n' is a multiple of 64 (numpy's ARRAY_ALIGN).
  auto padded = [&](std::size_t preamble) {
    const std::size_t unpadded = preamble + dict.size() + 1;
    return dict.size() + (64 - unpadded % 64) % 64 + 1;
  };
  std::size_t preamble = 10;
  std::size_t header_len = padded(preamble);
  std::uint8_t major = 1;
  if (header_len > 0xFFFF) {
    preamble = 12;
    header_len = padded(preamble);
    major = 2;
  }
  std::string out(kMagic);
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < preamble - 8; ++i)
    out += static_cast<char>((header_len >> (8 * i)) & 0xFF);
  out += dict;
  out.append(header_len - dict.size() - 1, ' ');
  out += '\n';
  return out;
}

std::string escaped(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out += ch;
      continue;
    }
    out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : fmt::format("\\x{:02x}", c);
  }
  return out;
}

std::string shape_string(std::span<const std::uint64_t> shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += fmt::format("{}{}", i ? "," : "", shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace shmgemm
