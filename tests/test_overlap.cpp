// Whether two strided views share memory (engine/overlap.hpp), against the bytes themselves:
// every pair of small views of one buffer, with every kind of stride numpy can make.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <cstddef>
#include <random>
#include <set>
#include <vector>

#include "engine/overlap.hpp"

using namespace shmgemm;
using shmgemm::detail::Overlap;

namespace {

// The byte offsets (from `base`) that the elements of `v` cover.
std::set<std::ptrdiff_t> bytes_of(const ArrayView& v, const std::byte* base) {
  std::set<std::ptrdiff_t> bytes;
  const std::int64_t count = v.size();
  const auto item = static_cast<std::ptrdiff_t>(item_size(v.dtype()));
  for (std::int64_t e = 0; e < count; ++e) {
    std::int64_t rest = e, offset = 0;
    for (std::size_t i = v.ndim(); i-- > 0;) {
      offset += (rest % v.shape()[i]) * v.strides()[i];
      rest /= v.shape()[i];
    }
    const std::ptrdiff_t at = static_cast<const std::byte*>(v.data()) + offset - base;
    for (std::ptrdiff_t b = 0; b < item; ++b)
      bytes.insert(at + b);
  }
  return bytes;
}

// A random view of up to 3 axes into a buffer of kBuffer bytes: strides of either sign, of
// whole items or not, zero (broadcast), any first byte that keeps it inside.
constexpr std::int64_t kBuffer = 256;
ArrayView random_view(std::byte* buffer, std::mt19937_64& rng) {
  static constexpr DType kTypes[] = {DType::int8, DType::int16, DType::float32, DType::float64,
                                     DType::complex128};
  const DType dtype = kTypes[rng() % std::size(kTypes)];
  const auto item = static_cast<std::int64_t>(item_size(dtype));
  const std::size_t ndim = rng() % 4;
  std::vector<std::int64_t> shape, strides;
  std::int64_t low = 0, high = item;
  for (std::size_t i = 0; i < ndim; ++i) {
    shape.push_back(static_cast<std::int64_t>(rng() % 5));
    const std::int64_t unit = rng() % 3 == 0 ? 1 : item;
    std::int64_t stride = unit * static_cast<std::int64_t>(rng() % 9) * (rng() % 2 ? 1 : -1);
    if (rng() % 7 == 0) stride = 0;
    strides.push_back(stride);
    if (shape.back() > 1) (stride < 0 ? low : high) += stride * (shape.back() - 1);
  }
  const std::int64_t room = kBuffer - (high - low);
  if (room <= 0) return random_view(buffer, rng);
  const std::int64_t start = -low + static_cast<std::int64_t>(rng() % std::uint64_t(room));
  return ArrayView(buffer + start, dtype, shape, strides);
}

}  // namespace

TEST_CASE("overlap is exact: 200,000 random pairs of views of one buffer against their bytes") {
  std::vector<std::byte> buffer(kBuffer);
  std::mt19937_64 rng(2026);
  int shared = 0, apart_in_one_span = 0;
  for (int i = 0; i < 200000; ++i) {
    const ArrayView x = random_view(buffer.data(), rng), y = random_view(buffer.data(), rng);
    const std::set<std::ptrdiff_t> bx = bytes_of(x, buffer.data()), by = bytes_of(y, buffer.data());
    bool truth = false;
    for (std::ptrdiff_t b : bx)
      truth |= by.count(b) > 0;
    const Overlap got = detail::overlap(x, y, std::uint64_t(1) << 40);
    CAPTURE(fmt::format("x shape ({}) strides ({}) at {}; y shape ({}) strides ({}) at {}",
                        fmt::join(x.shape(), ","), fmt::join(x.strides(), ","),
                        static_cast<const std::byte*>(x.data()) - buffer.data(),
                        fmt::join(y.shape(), ","), fmt::join(y.strides(), ","),
                        static_cast<const std::byte*>(y.data()) - buffer.data()));
    REQUIRE(got == (truth ? Overlap::some : Overlap::none));
    REQUIRE(detail::overlap(y, x, std::uint64_t(1) << 40) == got);
    shared += truth;
    // Pairs whose extents meet but whose bytes do not: the cases a bounds test gets wrong.
    if (!truth && !bx.empty() && !by.empty() && *bx.begin() <= *by.rbegin() &&
        *by.begin() <= *bx.rbegin())
      ++apart_in_one_span;
  }
  CHECK(shared > 10000);
  CHECK(apart_in_one_span > 5000);
}

TEST_CASE(
    "overlap on the views a matmul meets: the same array, shifted rows, interleaved columns") {
  std::vector<double> base(400 * 300);
  auto view = [&](std::size_t first, std::vector<std::int64_t> shape,
                  std::vector<std::int64_t> strides) {
    return ArrayView(base.data() + first, DType::float64, shape, strides);
  };
  const ArrayView a = view(0, {300, 300}, {2400, 8});
  CHECK(detail::overlap(a, a) == Overlap::some);
  CHECK(detail::overlap(a, view(100 * 300, {300, 300}, {2400, 8})) == Overlap::some);
  CHECK(detail::overlap(a, view(300 * 300, {100, 300}, {2400, 8})) == Overlap::none);
  // Even and odd columns of 400 x 300: one span, no element in common.
  CHECK(detail::overlap(view(0, {400, 150}, {2400, 16}), view(1, {400, 150}, {2400, 16})) ==
        Overlap::none);
  // A transpose shares every element.
  CHECK(detail::overlap(view(0, {300, 300}, {2400, 8}), view(0, {300, 300}, {8, 2400})) ==
        Overlap::some);
  // Empty views share nothing; a 0-d view is one element.
  CHECK(detail::overlap(a, view(0, {0, 300}, {2400, 8})) == Overlap::none);
  CHECK(detail::overlap(a, view(5, {}, {})) == Overlap::some);
}

TEST_CASE("overlap gives up as 'maybe' past its bound of work, never as a wrong 'none'") {
  // Strides whose equation has many near-solutions and none: 7 and 11 steps of large extents.
  std::vector<std::byte> buffer(1 << 20);
  const ArrayView x(buffer.data(), DType::int8, {1000, 1000}, {7 * 97, 7});
  const ArrayView y(buffer.data() + 3, DType::int8, {1000, 1000}, {11 * 89, 11});
  const Overlap full = detail::overlap(x, y, std::uint64_t(1) << 40);
  const Overlap bounded = detail::overlap(x, y, 10);
  CHECK(bounded != Overlap::none);
  if (bounded != Overlap::maybe) CHECK(bounded == full);
}
