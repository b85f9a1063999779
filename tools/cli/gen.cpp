#include <fmt/format.h>

#include <charconv>
#include <complex>
#include <cstring>
#include <type_traits>

#include "common/npy.hpp"
#include "common/npy_file.hpp"
#include "shmgemm/error.hpp"
#include "tools/cli/commands.hpp"

namespace shmgemm::cli {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) for reals; both parts so for complex.
template <class T>
T uniform(std::uint64_t bits) {
  if constexpr (std::is_same_v<T, double>)
    return static_cast<double>(bits >> 11) * 0x1.0p-53;
  else
    return static_cast<float>(bits >> 40) * 0x1.0p-24f;
}

// One element of type T from 64 random bits (and `more` for a complex's imaginary part): a
// value of `range` when given, else the default (see add_gen).
template <class T>
T draw(std::uint64_t bits, std::uint64_t more, const std::optional<IntRange>& range) {
  if (range) {
    const uint128 span = static_cast<uint128>(range->hi - range->lo);
    const int128 v = range->lo + static_cast<int128>(span > UINT64_MAX ? bits : bits % span);
    if constexpr (std::is_integral_v<T>)
      return static_cast<T>(static_cast<std::make_unsigned_t<T>>(static_cast<std::uint64_t>(v)));
    else
      return static_cast<T>(static_cast<double>(v));
  }
  if constexpr (std::is_integral_v<T>)
    return static_cast<T>(bits);  // the whole range
  else if constexpr (std::is_floating_point_v<T>)
    return uniform<T>(bits);
  else
    return T(uniform<typename T::value_type>(bits), uniform<typename T::value_type>(more));
}

template <class T>
void fill(std::byte* data, std::uint64_t count, std::uint64_t seed,
          const std::optional<IntRange>& range) {
  const std::uint64_t base = splitmix64(seed);
  for (std::uint64_t i = 0; i < count; ++i) {
    const T v = draw<T>(splitmix64(base + 2 * i), splitmix64(base + 2 * i + 1), range);
    std::memcpy(data + i * sizeof(T), &v, sizeof v);
  }
}

// "LO,HI" as numpy's randint(LO, HI): LO <= x < HI, inside the dtype's range.
IntRange parse_int_range(const std::string& text, DType dtype) {
  auto bad = [&](std::string_view why) {
    return Error::bad_option("--int-range", fmt::format("--int-range '{}': {}", text, why));
  };
  const std::size_t comma = text.find(',');
  if (comma == std::string::npos) throw bad("expected LO,HI (as numpy's randint(LO, HI))");
  auto number = [&](std::string_view t) {
    const bool negative = !t.empty() && t[0] == '-';
    std::uint64_t magnitude = 0;
    const char* first = t.data() + (negative ? 1 : 0);
    const auto [end, ec] = std::from_chars(first, t.data() + t.size(), magnitude);
    if (ec != std::errc() || end != t.data() + t.size() || first == end)
      throw bad("expected two integers, LO,HI");
    return negative ? -static_cast<int128>(magnitude) : static_cast<int128>(magnitude);
  };
  const IntRange r{number(std::string_view(text).substr(0, comma)),
                   number(std::string_view(text).substr(comma + 1))};
  if (r.lo >= r.hi) throw bad("LO must be below HI (HI is excluded)");
  if (is_integer(dtype)) {
    const unsigned bits = dtype_bits(dtype);
    const int128 lowest = is_signed_integer(dtype) ? -(static_cast<int128>(1) << (bits - 1)) : 0;
    const int128 highest =
        (static_cast<int128>(1) << (is_signed_integer(dtype) ? bits - 1 : bits)) - 1;
    if (r.lo < lowest || r.hi - 1 > highest)
      throw bad(fmt::format("outside {}'s range", dtype_name(dtype)));
  }
  return r;
}

struct GenArgs {
  std::string shape, dtype = "float64", out, int_range;
  std::uint64_t seed = 0;
};

int run_gen(const GenArgs& args) {
  const DType dtype = *dtype_from_name(args.dtype);
  std::optional<IntRange> range;
  if (!args.int_range.empty()) range = parse_int_range(args.int_range, dtype);
  check_output_name(args.out);
  const std::vector<std::uint64_t> shape = parse_dims(args.shape, "--shape", true);
  const std::uint64_t bytes = npy_data_bytes(dtype, shape, "--shape");
  check_room(args.out, bytes);
  write_random_npy(args.out, dtype, shape, args.seed, range);
  fmt::print("{}: {} {}, {} written\n", args.out, shape_string(shape), args.dtype,
             size_string(bytes));
  return 0;
}

}  // namespace

void write_random_npy(const std::filesystem::path& path, DType dtype,
                      const std::vector<std::uint64_t>& shape, std::uint64_t seed,
                      const std::optional<IntRange>& range) {
  NpyOutput out = NpyOutput::create(path, dtype, shape);
  const std::uint64_t count = out.header().element_count;
  visit_dtype(dtype, [&](auto t) { fill<decltype(t)>(out.data(), count, seed, range); });
  out.commit();
}

void add_gen(CLI::App& app, Action& action) {
  const auto [cmd, args] = add_command<GenArgs>(
      app, action, "gen", "write a .npy file of random values (any dtype, any shape)", run_gen);
  cmd->footer(
      "Write a .npy file of random values, reproducible from --seed: uniform in [0, 1) for "
      "floats (both parts for complex), the whole range for integers, or the integers of "
      "--int-range.");
  cmd->add_option("--shape", args->shape,
                  "dimensions: 4000x4000, 7 (1-D), 2000x200x200 (a stack of 2000 matrices)")
      ->required()
      ->option_text("DIMS REQUIRED");
  std::vector<std::string> names;
  for (DType d : all_dtypes())
    names.emplace_back(dtype_name(d));
  cmd->add_option("--dtype", args->dtype,
                  fmt::format("one of {} (default: float64)", supported_dtypes()))
      ->transform(dtype_choice(names))
      ->option_text("DTYPE");
  cmd->add_option("--int-range", args->int_range,
                  "LO,HI: integers LO <= x < HI, as numpy's randint(LO, HI) (for floats: "
                  "integer values)")
      ->option_text("LO,HI");
  cmd->add_option("--seed", args->seed, "random seed: a whole number from 0 (the default)")
      ->check(number<std::uint64_t>([](std::uint64_t) { return true; },
                                    "a whole number from 0 to 2^64-1", ""))
      ->option_text("N");
  cmd->add_option("-o,--output", args->out, "the .npy file to write")
      ->required()
      ->option_text("FILE REQUIRED");
}

}  // namespace shmgemm::cli
