#include "worker/slice_kernel.hpp"

#include <cblas.h>

#include <algorithm>
#include <complex>
#include <cstring>
#include <type_traits>

namespace shmgemm {
namespace {

// C = A·B through cblas_?gemm, row-major; complex alpha and beta go by pointer.
template <class T>
void gemm_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, const T* a,
               blasint lda, const T* b, blasint ldb, T* c, blasint ldc) {
  const T one(1), zero(0);
  if constexpr (std::is_same_v<T, double>)
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  else if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  else if constexpr (std::is_same_v<T, std::complex<float>>)
    cblas_cgemm(CblasRowMajor, ta, tb, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
  else
    cblas_zgemm(CblasRowMajor, ta, tb, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

template <class T>
void gemm_rows(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
               RowRange rows) {
  const auto m = static_cast<blasint>(rows.size());
  const auto n = static_cast<blasint>(c.cols);
  const auto k = static_cast<blasint>(a.cols);
  if (m == 0 || n == 0) return;
  T* c_rows = reinterpret_cast<T*>(c.data) + rows.begin * c.ld;
  if (k == 0) {
    for (blasint i = 0; i < m; ++i)
      std::fill_n(c_rows + i * c.ld, c.cols, T(0));
    return;
  }
  // Row-major A: its rows start at row `begin`. Column-major A is a row-major A^T whose
  // columns begin..end are our rows: offset by `begin`, and transposed.
  const T* a_base = reinterpret_cast<const T*>(a.data);
  const bool a_rows = a.layout == Layout::row_major;
  const T* a_rows_ptr = a_rows ? a_base + rows.begin * a.ld : a_base + rows.begin;
  const CBLAS_TRANSPOSE a_trans = a_rows ? CblasNoTrans : CblasTrans;
  const CBLAS_TRANSPOSE b_trans = b.layout == Layout::row_major ? CblasNoTrans : CblasTrans;
  gemm_call<T>(a_trans, b_trans, m, n, k, a_rows_ptr, static_cast<blasint>(a.ld),
               reinterpret_cast<const T*>(b.data), static_cast<blasint>(b.ld), c_rows,
               static_cast<blasint>(c.ld));
}

}  // namespace

void compute_rows(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                  RowRange rows) {
  switch (dtype) {
    case DType::float32:
      return gemm_rows<float>(a, b, c, rows);
    case DType::complex64:
      return gemm_rows<std::complex<float>>(a, b, c, rows);
    case DType::complex128:
      return gemm_rows<std::complex<double>>(a, b, c, rows);
    default:
      return gemm_rows<double>(a, b, c, rows);
  }
}

void set_blas_threads(int threads) {
  openblas_set_num_threads(threads);
}

}  // namespace shmgemm
