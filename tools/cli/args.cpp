// Arguments the subcommands share: dimensions, lists, medians.
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <algorithm>

#include <charconv>
#include <limits>

#include "common/npy.hpp"

#include "shmgemm/error.hpp"
#include "tools/cli/commands.hpp"

namespace shmgemm::cli {

std::vector<std::uint64_t> parse_dims(const std::string& text, std::string_view option,
                                      bool allow_zero) {
  std::vector<std::uint64_t> dims;
  for (std::size_t pos = 0; pos <= text.size();) {
    const std::size_t x = std::min(text.find('x', pos), text.size());
    std::uint64_t d = 0;
    const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + x, d);
    if (ec != std::errc() || end != text.data() + x || (d == 0 && !allow_zero))
      throw Error::bad_option(
          std::string(option),
          fmt::format("{} '{}': expected dimensions like 4000x3000", option, text));
    dims.push_back(d);
    pos = x + 1;
  }
  return dims;
}

std::array<std::uint64_t, 3> parse_product_shape(const std::string& text, std::string_view option) {
  const std::vector<std::uint64_t> d = parse_dims(text, option, false);
  if (d.size() == 1) return {d[0], d[0], d[0]};
  if (d.size() == 3) return {d[0], d[1], d[2]};
  throw Error::bad_option(std::string(option),
                          fmt::format("{} '{}': expected N (square) or MxKxN", option, text));
}

std::uint64_t parse_count(const std::string& text, std::string_view option) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v == 0)
    throw Error::bad_option(std::string(option),
                            fmt::format("{} '{}': expected positive whole numbers", option, text));
  return v;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  for (std::size_t pos = 0; pos <= text.size();) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    if (comma > pos) items.push_back(text.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return items;
}

void check_output_name(const std::string& out) {
  if (out == "-")
    throw Error::bad_option(
        "--output",
        "--output -: writing to standard output is not supported (a .npy is written "
        "under a temporary name beside its destination and renamed when complete); name "
        "a file");
}

std::uint64_t npy_data_bytes(DType dtype, const std::vector<std::uint64_t>& shape,
                             std::string_view option) {
  uint128 bytes = item_size(dtype);
  for (std::uint64_t d : shape) {
    bytes *= d;
    if (bytes > uint128(std::numeric_limits<std::uint64_t>::max() / 2))
      throw Error::bad_option(
          std::string(option),
          fmt::format("{} ({}): too many bytes for any file", option, shape_string(shape)));
  }
  return static_cast<std::uint64_t>(bytes);
}

void check_room(const std::filesystem::path& out, std::uint64_t bytes) {
  std::filesystem::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return;  // the write reports what is wrong
  const auto free = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (bytes > free)
    throw Error(ErrorCode::resource,
                fmt::format("{}: needs {}, and its filesystem has {} free", out.string(),
                            size_string(bytes), size_string(free)));
}

std::string size_string(std::uint64_t bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} bytes", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace shmgemm::cli
