#include "worker/slice_kernel.hpp"

#include <cblas.h>

#include <cstring>

namespace shmgemm {
namespace {

template <class T, class Gemm>
void gemm_rows(Gemm gemm, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
               RowRange rows) {
  const auto m = static_cast<blasint>(rows.size());
  const auto n = static_cast<blasint>(c.cols);
  const auto k = static_cast<blasint>(a.cols);
  if (m == 0 || n == 0) return;
  T* c_rows = reinterpret_cast<T*>(c.data) + rows.begin * c.ld;
  if (k == 0) {
    for (blasint i = 0; i < m; ++i)
      std::memset(c_rows + i * c.ld, 0, sizeof(T) * c.cols);
    return;
  }
  // Row-major A: its rows start at row `begin`. Column-major A is a row-major A^T whose
  // columns begin..end are our rows: offset by `begin`, and transposed.
  const T* a_base = reinterpret_cast<const T*>(a.data);
  const bool a_rows = a.layout == Layout::row_major;
  const T* a_rows_ptr = a_rows ? a_base + rows.begin * a.ld : a_base + rows.begin;
  const CBLAS_TRANSPOSE a_trans = a_rows ? CblasNoTrans : CblasTrans;
  const CBLAS_TRANSPOSE b_trans = b.layout == Layout::row_major ? CblasNoTrans : CblasTrans;
  gemm(CblasRowMajor, a_trans, b_trans, m, n, k, T(1), a_rows_ptr, static_cast<blasint>(a.ld),
       reinterpret_cast<const T*>(b.data), static_cast<blasint>(b.ld), T(0), c_rows,
       static_cast<blasint>(c.ld));
}

}  // namespace

void compute_rows(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                  RowRange rows) {
  if (dtype == DType::float64)
    gemm_rows<double>(cblas_dgemm, a, b, c, rows);
  else
    gemm_rows<float>(cblas_sgemm, a, b, c, rows);
}

void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
}

}  // namespace shmgemm
