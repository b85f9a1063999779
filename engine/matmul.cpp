// matmul: the one-call product for host programs, on matrices in their own memory.
#include <fmt/format.h>
#include <chrono>
#include <climits>
#include <vector>

#include "common/npy.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/placement.hpp"
#include "engine/views.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm {
namespace {}  // namespace

namespace detail {

void check_aligned(std::uint64_t m, std::uint64_t k, std::uint64_t k2, std::uint64_t n) {
  const std::uint64_t sa[] = {m, k}, sb[] = {k2, n};
  if (k != k2)
    throw Error(ErrorCode::shape_mismatch,
                fmt::format("shapes {} and {} not aligned: {} (dim 1) != {} (dim 0)",
                            shape_string(sa), shape_string(sb), k, k2));
}

void check_product_shapes(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c) {
  check_aligned(a.rows, a.cols, b.rows, b.cols);
  if (c.rows != a.rows || c.cols != b.cols)
    throw Error(ErrorCode::shape_mismatch,
                fmt::format("output shape ({},{}) does not match the product's ({},{})", c.rows,
                            c.cols, a.rows, b.cols));
  for (std::uint64_t d : {a.rows, a.cols, b.cols, a.ld, b.ld, c.ld})
    if (d > static_cast<std::uint64_t>(INT_MAX))
      throw Error(ErrorCode::unsupported,
                  fmt::format("dimension {} exceeds {}, the largest that OpenBLAS's 32-bit "
                              "interface takes",
                              d, INT_MAX));
}

}  // namespace detail

namespace {

using detail::dtype_of;
using detail::ref_of;

template <class T>
Report matmul_impl(MatrixView<const T> a, MatrixView<const T> b, MatrixView<T> c,
                   const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  // What stops this call: the interrupts that arrive from here on, and its timeout.
  const detail::StopScope interrupts(options.timeout);
  detail::check_options(options, detail::Entry::matmul);
  detail::check_product_shapes(ref_of(a), ref_of(b), ref_of(c));
  constexpr DType dtype = dtype_of<T>();
  Report report;
  report.m = a.rows();
  report.k = a.cols();
  report.n = b.cols();
  report.dtype = dtype_name(dtype);
  report.launch = options.launch;
  report.backing = Backing::shm;
  auto done = [&] {
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };
  if (report.m == 0 || report.n == 0) return done();
  if (report.k == 0) {
    for (std::size_t i = 0; i < c.rows(); ++i)
      for (std::size_t j = 0; j < c.cols(); ++j)
        c(i, j) = T(0);
    return done();
  }

  const detail::Plan plan =
      detail::plan_product({report.m, report.k, report.n, dtype}, options, report);
  if (plan.in_process) {
    const auto t = std::chrono::steady_clock::now();
    if (c.order() == Order::row_major) {
      detail::compute_in_process(dtype, ref_of(a), ref_of(b), ref_of(c), plan, options);
    } else {
      // BLAS writes C row-major here: through a row-major buffer, then transposed into c.
      std::vector<T> buffer(c.rows() * c.cols());
      MatrixView<T> tmp(buffer.data(), c.rows(), c.cols());
      detail::compute_in_process(dtype, ref_of(a), ref_of(b), ref_of(tmp), plan, options);
      copy_rows(ref_of(MatrixView<const T>(tmp)), ref_of(c), 0, c.rows(), sizeof(T));
    }
    report.compute_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    return done();
  }

  detail::Placement placement(ref_of(a), ref_of(b), ref_of(c), dtype, options.launch);
  detail::run_and_finish(dtype, plan, placement, options, report);
  detail::throw_if_interrupted();
  return done();
}

}  // namespace

Report matmul(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c,
              const Options& options) {
  return matmul_impl<double>(a, b, c, options);
}

Report matmul(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c,
              const Options& options) {
  return matmul_impl<float>(a, b, c, options);
}

}  // namespace shmgemm
