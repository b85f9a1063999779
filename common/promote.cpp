#include "common/promote.hpp"

#include <algorithm>

namespace shmgemm {
namespace {

// The integer type of `bits` (8, 16, 32; else 64), signed or not.
DType integer_of_bits(bool is_signed, unsigned bits) {
  static constexpr DType kIntegers[2][4] = {
      {DType::uint8, DType::uint16, DType::uint32, DType::uint64},
      {DType::int8, DType::int16, DType::int32, DType::int64}};
  return kIntegers[is_signed ? 1 : 0][bits <= 8 ? 0 : bits <= 16 ? 1 : bits <= 32 ? 2 : 3];
}

// Bits of an integer type's range as a signed number needs: int16 15, uint16 16.
unsigned magnitude_bits(DType d) {
  return is_signed_integer(d) ? dtype_bits(d) - 1 : dtype_bits(d);
}

DType promote_integers(DType a, DType b) {
  const unsigned ba = dtype_bits(a), bb = dtype_bits(b);
  if (is_signed_integer(a) == is_signed_integer(b))
    return integer_of_bits(is_signed_integer(a), std::max(ba, bb));
  // One signed, one unsigned: the smallest signed type holding the unsigned one's range.
  const DType u = is_signed_integer(a) ? b : a;
  const DType s = is_signed_integer(a) ? a : b;
  if (dtype_bits(s) > dtype_bits(u)) return s;
  if (dtype_bits(u) < 64) return integer_of_bits(true, 2 * dtype_bits(u));
  return DType::float64;
}

// An integer with a float or complex: the float's precision must hold the integer exactly
// (float32's 24 bits hold 16-bit integers).
DType promote_integer_with(DType integer, DType other) {
  const bool narrow = magnitude_bits(integer) <= 16;
  if (other == DType::float32) return narrow ? DType::float32 : DType::float64;
  if (other == DType::complex64) return narrow ? DType::complex64 : DType::complex128;
  return other;  // float64, complex128
}

DType promote_inexact(DType a, DType b) {
  if (a == b) return a;
  if (is_complex(a) || is_complex(b)) {
    const bool wide = a == DType::complex128 || b == DType::complex128 || a == DType::float64 ||
                      b == DType::float64;
    return wide ? DType::complex128 : DType::complex64;
  }
  return DType::float64;
}

}  // namespace

DType result_type(DType a, DType b) {
  if (is_integer(a) && is_integer(b)) return promote_integers(a, b);
  if (is_integer(a)) return promote_integer_with(a, b);
  if (is_integer(b)) return promote_integer_with(b, a);
  return promote_inexact(a, b);
}

DType compute_type(DType result) {
  return is_integer(result) ? DType::float64 : result;
}

}  // namespace shmgemm
