// The slice kernel: rows of C = A·B with OpenBLAS. It computes and nothing else; it knows
// nothing of processes, segments or files.
#pragma once

#include "common/dtype.hpp"
#include "common/matrix.hpp"
#include "common/partition.hpp"

namespace shmgemm {

// Computes rows [rows.begin, rows.end) of C = A·B. A (m x k) and B (k x n) may be row- or
// column-major (a column-major operand goes through BLAS's transpose flag, uncopied); C is
// row-major. float32, float64, complex64 or complex128. With k = 0 the rows are set to zero. Every
// dimension and leading dimension must fit BLAS's 32-bit int (the coordinator checks).
// Thread-safety: reentrant.
void compute_rows(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                  RowRange rows);

// Sets the number of threads OpenBLAS uses in this process.
void set_blas_threads(int threads);

}  // namespace shmgemm
