// Element conversions for np.matmul's promotions and exact integer products: gathering a
// strided block of any dtype into a dense buffer of the type the BLAS multiplies, integer
// ranges, and limbs. Pure computation over memory; thread-safety: reentrant.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.hpp"

namespace shmgemm {

// A rows x cols block whose element (i, j) is at base + (i*row_stride + j*col_stride) items.
struct StridedBlock {
  DType dtype = DType::float64;
  const std::byte* base = nullptr;
  std::uint64_t rows = 0, cols = 0, row_stride = 0, col_stride = 0;
};

// Converts `from` into `to` (float32, float64, complex64 or complex128), row-major with leading
// dimension from.cols, as numpy's astype does: integers and reals by value, reals into complex
// with a zero imaginary part. Precondition: the conversion is a promotion (never complex to real).
void gather_convert(const StridedBlock& from, DType to, std::byte* out);

// Integers as int64, row-major with leading dimension from.cols. uint64 values are
// reinterpreted (x mod 2^64), which changes no product modulo 2^64.
void gather_int64(const StridedBlock& from, std::int64_t* out);

// The largest |x| among `count` contiguous integers of `dtype` at `data`, read as gather_int64
// reads them (so at most 2^63).
std::uint64_t max_magnitude(DType dtype, const std::byte* data, std::uint64_t count);

// Limb `limb` of each of `count` int64 values, as doubles (see LimbPlan).
void split_limb(const std::int64_t* x, std::uint64_t count, unsigned limb, unsigned bits,
                unsigned limbs, double* out);

// acc[i] += int64(t[i]) << shift, modulo 2^64. Every t[i] is an integer of magnitude at most
// 2^53.
void accumulate_shifted(const double* t, std::uint64_t count, unsigned shift, std::uint64_t* acc);

// Stores the integers t[i] (exact, |t[i]| <= 2^53) as `count` elements of integer dtype `to`
// at `out`, modulo 2^bits. `out` may be `t` itself when `to` is 8 bytes wide.
void store_exact(const double* t, std::uint64_t count, DType to, std::byte* out);

// Stores acc[i] modulo 2^bits into `count` elements of integer dtype `to` at `out`.
void store_wrapped(const std::uint64_t* acc, std::uint64_t count, DType to, std::byte* out);

}  // namespace shmgemm
