#include "worker/convert.hpp"

#include <bit>
#include <complex>
#include <cstring>
#include <type_traits>

#include "common/limbs.hpp"

namespace shmgemm {
namespace {

template <class T>
constexpr bool is_complex_v = false;
template <class T>
constexpr bool is_complex_v<std::complex<T>> = true;

// Elements may sit at any byte offset in a file: read them with memcpy.
template <class S>
S load(const std::byte* p) {
  S s;
  std::memcpy(&s, p, sizeof s);
  return s;
}

template <class D, class S>
D convert(S s) {
  if constexpr (is_complex_v<D> && !is_complex_v<S>)
    return D(static_cast<typename D::value_type>(s), 0);
  else if constexpr (is_complex_v<D>)
    return D(s);
  else if constexpr (!is_complex_v<S>)
    return static_cast<D>(s);
  else
    return D{};  // complex to real: never a promotion
}

template <class S, class D, class Op>
void gather(const StridedBlock& from, D* out, Op op) {
  const std::uint64_t rs = from.row_stride * sizeof(S), cs = from.col_stride * sizeof(S);
  for (std::uint64_t i = 0; i < from.rows; ++i) {
    const std::byte* row = from.base + i * rs;
    D* o = out + i * from.cols;
    if (cs == sizeof(S))
      for (std::uint64_t j = 0; j < from.cols; ++j)
        o[j] = op(load<S>(row + j * sizeof(S)));
    else
      for (std::uint64_t j = 0; j < from.cols; ++j)
        o[j] = op(load<S>(row + j * cs));
  }
}

template <class S>
std::int64_t as_int64(S s) {
  if constexpr (std::is_same_v<S, std::uint64_t>)
    return std::bit_cast<std::int64_t>(s);
  else
    return static_cast<std::int64_t>(s);
}

}  // namespace

void gather_convert(const StridedBlock& from, DType to, std::byte* out) {
  visit_dtype(from.dtype, [&](auto s) {
    using S = decltype(s);
    visit_dtype(to, [&](auto d) {
      using D = decltype(d);
      if constexpr (std::is_floating_point_v<D> || is_complex_v<D>)
        gather<S>(from, reinterpret_cast<D*>(out), [](S x) { return convert<D>(x); });
    });
  });
}

void gather_int64(const StridedBlock& from, std::int64_t* out) {
  visit_dtype(from.dtype, [&](auto s) {
    using S = decltype(s);
    if constexpr (std::is_integral_v<S>) gather<S>(from, out, [](S x) { return as_int64(x); });
  });
}

std::uint64_t max_magnitude(DType dtype, const std::byte* data, std::uint64_t count) {
  std::uint64_t largest = 0;
  visit_dtype(dtype, [&](auto s) {
    using S = decltype(s);
    if constexpr (std::is_integral_v<S>)
      for (std::uint64_t i = 0; i < count; ++i) {
        const std::uint64_t m = magnitude(as_int64(load<S>(data + i * sizeof(S))));
        largest = m > largest ? m : largest;
      }
  });
  return largest;
}

void split_limb(const std::int64_t* x, std::uint64_t count, unsigned limb, unsigned bits,
                unsigned limbs, double* out) {
  for (std::uint64_t i = 0; i < count; ++i)
    out[i] = static_cast<double>(limb_of(x[i], limb, bits, limbs));
}

void accumulate_shifted(const double* t, std::uint64_t count, unsigned shift, std::uint64_t* acc) {
  for (std::uint64_t i = 0; i < count; ++i)
    acc[i] += static_cast<std::uint64_t>(static_cast<std::int64_t>(t[i])) << shift;
}

namespace {

// Stores count values get(i) (uint64) modulo 2^bits as elements of integer dtype `to`.
template <class Get>
void store_modulo(std::uint64_t count, DType to, std::byte* out, Get get) {
  visit_dtype(to, [&](auto d) {
    using D = decltype(d);
    if constexpr (std::is_integral_v<D>)
      for (std::uint64_t i = 0; i < count; ++i) {
        // Conversion to an unsigned type is modulo 2^bits; to a signed one, two's complement.
        const D v = static_cast<D>(static_cast<std::make_unsigned_t<D>>(get(i)));
        std::memcpy(out + i * sizeof(D), &v, sizeof v);
      }
  });
}

}  // namespace

void store_exact(const double* t, std::uint64_t count, DType to, std::byte* out) {
  // In place for 8-byte results: element i is read before it is written.
  store_modulo(count, to, out, [t](std::uint64_t i) {
    double x;
    std::memcpy(&x, t + i, sizeof x);
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(x));
  });
}

void store_wrapped(const std::uint64_t* acc, std::uint64_t count, DType to, std::byte* out) {
  store_modulo(count, to, out, [acc](std::uint64_t i) { return acc[i]; });
}

}  // namespace shmgemm
