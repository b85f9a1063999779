// numpy's type promotion for two arrays (np.result_type), over the dtypes shmgemm takes.
// A pure function: no I/O, no state.
#pragma once

#include "common/dtype.hpp"

namespace shmgemm {

// The dtype of np.matmul(a, b) for arrays of dtypes `a` and `b`:
//   same kind, any sizes          the larger            int8 @ int32      -> int32
//   signed and unsigned           a signed type that    uint8 @ int8      -> int16
//                                 holds both, else f8   uint64 @ int64    -> float64
//   integer and float32           float32 for <= 16-bit int16 @ float32   -> float32
//                                 integers, else f8     int32 @ float32   -> float64
//   integer and complex64         the same rule         int64 @ complex64 -> complex128
//   float and complex             complex wide enough   float64 @ complex64 -> complex128
DType result_type(DType a, DType b);

// The type both operands are converted to for the product: the result type for floats and
// complex; float64 for integer results, which the engine computes exactly in doubles.
DType compute_type(DType result);

}  // namespace shmgemm
