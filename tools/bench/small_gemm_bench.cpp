// libxsmm's JIT kernels against OpenBLAS on small products, per shape: the measurement behind
// leaving libxsmm out (docs/performance.md). Not part of the build; `make small-gemm-bench`
// installs Debian's libxsmm-dev and compiles and runs it. For each shape, 981 products of
// (m x k) @ (k x n) float64 in a loop, each library's per-product time, in the order
// libxsmm, OpenBLAS, OpenBLAS, libxsmm, with libxsmm's first dispatch (its initialisation and
// the JIT) timed apart; OpenBLAS with one thread.
#include <cblas.h>
#include <libxsmm.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

using Clock = std::chrono::steady_clock;

static double us_since(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

int main() {
  openblas_set_num_threads(1);
  std::printf("OpenBLAS kernel: %s\n\n", openblas_get_corename());
  std::printf(
      "| m x k x n | libxsmm first dispatch us | libxsmm us/product | OpenBLAS us/product "
      "| libxsmm / OpenBLAS |\n|---|---|---|---|---|\n");
  const int shapes[][3] = {{4, 8, 8},    {8, 16, 16},  {10, 20, 20},   {16, 32, 32},   {24, 48, 48},
                           {32, 64, 64}, {48, 96, 96}, {64, 128, 128}, {100, 200, 200}};
  for (const auto& s : shapes) {
    const int m = s[0], k = s[1], n = s[2], count = 981;
    std::vector<double> a(std::size_t(count) * m * k, 1.0), b(std::size_t(count) * k * n, 0.5),
        c(std::size_t(count) * m * n);
    // Column-major libxsmm: row-major C = A·B is C^T = B^T·A^T.
    const libxsmm_blasint lm = n, ln = m, lk = k, lda = n, ldb = k, ldc = n;
    const double alpha = 1, beta = 0;
    auto xsmm = [&] {
      const auto t = Clock::now();
      for (int i = 0; i < count; ++i) {
        const libxsmm_dmmfunction f =
            libxsmm_dmmdispatch(lm, ln, lk, &lda, &ldb, &ldc, &alpha, &beta, nullptr, nullptr);
        f(&b[std::size_t(i) * k * n], &a[std::size_t(i) * m * k], &c[std::size_t(i) * m * n]);
      }
      return us_since(t) / count;
    };
    auto openblas = [&] {
      const auto t = Clock::now();
      for (int i = 0; i < count; ++i)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0,
                    &a[std::size_t(i) * m * k], k, &b[std::size_t(i) * k * n], n, 0.0,
                    &c[std::size_t(i) * m * n], n);
      return us_since(t) / count;
    };
    const auto t = Clock::now();
    libxsmm_dmmdispatch(lm, ln, lk, &lda, &ldb, &ldc, &alpha, &beta, nullptr, nullptr);
    const double first = us_since(t);
    const double x1 = xsmm(), o1 = openblas(), o2 = openblas(), x2 = xsmm();
    const double x = std::min(x1, x2), o = std::min(o1, o2);
    std::printf("| %dx%dx%d | %.0f | %.2f | %.2f | %.2f |\n", m, k, n, first, x, o, x / o);
  }
}
