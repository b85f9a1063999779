// np.matmul's whole rules from .npy files: any supported dtypes with numpy's promotion, exact
// integers, complex, 1-D operands and broadcast stacks. The 2-D single-float-dtype product,
// which needs none of it, goes through the coordinator's own path.
#pragma once

#include <chrono>
#include <filesystem>

#include "common/matmul_shape.hpp"
#include "common/npy.hpp"
#include "common/npy_file.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// The shape of np.matmul(a, b) (numpy's rules). Throws Error(shape_mismatch) with numpy's
// message when numpy refuses it, Error(unsupported) naming the file when a matrix dimension
// exceeds OpenBLAS's 32-bit int.
MatmulShape npy_matmul_shape(const NpyMapping& a, const NpyMapping& b);

// True unless both operands are 2-D float32, or both 2-D float64.
bool needs_general_product(const NpyHeader& a, const NpyHeader& b);

// np.matmul(a, b) into `out`, on the mapped files (Backing::file; the shm backing, copied
// inputs and streaming apply to the 2-D float path only and are refused here with
// Error(unsupported)). Integer operands: the workers find their ranges (Phase::scan), convert B
// once into limbs in a shared segment (Phase::prepare), and multiply limb pairs with dgemm
// (Phase::multiply). Other operands that OpenBLAS cannot take as they are (another dtype than
// the result's, or strides without a unit one) are converted the same way: B once into a
// segment, A a chunk of rows at a time in the worker that multiplies them.
Report multiply_general(const NpyMapping& a, const NpyMapping& b, const MatmulShape& shape,
                        const std::filesystem::path& out, const Options& options,
                        std::chrono::steady_clock::time_point start);

}  // namespace shmgemm::detail
