// matmul: the front end for arrays in the host program's memory, and ArrayView itself.
#include <fmt/format.h>
#include <chrono>
#include <climits>
#include <cstring>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "common/matmul_shape.hpp"
#include "common/npy.hpp"
#include "common/promote.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/overlap.hpp"
#include "engine/placement.hpp"
#include "engine/product.hpp"
#include "engine/shared_work.hpp"
#include "engine/views.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/blas_core.hpp"

namespace shmgemm {
namespace {

void check_view(const std::vector<std::int64_t>& shape, std::vector<std::int64_t>& strides,
                DType dtype) {
  if (shape.size() > kMaxDims)
    throw Error(
        ErrorCode::invalid_argument,
        fmt::format("ArrayView: {} dimensions; numpy allows at most {}", shape.size(), kMaxDims));
  for (std::int64_t d : shape)
    if (d < 0)
      throw Error(
          ErrorCode::invalid_argument,
          fmt::format("ArrayView: negative dimension {} in shape ({})", d, fmt::join(shape, ",")));
  if (strides.empty()) {
    strides.resize(shape.size());
    auto step = static_cast<std::int64_t>(item_size(dtype));
    for (std::size_t i = shape.size(); i-- > 0;) {
      strides[i] = step;
      step *= std::max<std::int64_t>(shape[i], 1);
    }
  } else if (strides.size() != shape.size()) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("ArrayView: {} strides for the {} dimensions of shape ({})",
                            strides.size(), shape.size(), fmt::join(shape, ",")));
  }
}

}  // namespace

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

ArrayView::ArrayView(const void* data, DType dtype, std::vector<std::int64_t> shape,
                     std::vector<std::int64_t> strides)
    : data_(data), dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)) {
  check_view(shape_, strides_, dtype_);
}

std::int64_t ArrayView::size() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape_)
    n *= d;
  return n;
}

bool ArrayView::is_c_contiguous() const {
  auto step = static_cast<std::int64_t>(item_size(dtype_));
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] > 1 && strides_[i] != step) return false;
    step *= shape_[i];
  }
  return true;
}

std::vector<std::int64_t> matmul_shape(const ArrayView& a, const ArrayView& b) {
  const MatmulShape shape = detail::check_arrays(a, b, nullptr).shape;
  return {shape.out_shape.begin(), shape.out_shape.end()};
}

double matmul_flops(std::span<const std::int64_t> sa, std::span<const std::int64_t> sb) {
  if (sa.empty() || sb.empty()) return 0;
  const double m = sa.size() >= 2 ? double(sa[sa.size() - 2]) : 1, k = double(sa.back());
  const double n = sb.size() >= 2 ? double(sb.back()) : 1;
  const std::size_t ba = sa.size() >= 2 ? sa.size() - 2 : 0,
                    bb = sb.size() >= 2 ? sb.size() - 2 : 0;
  double batch = 1;
  for (std::size_t i = 0; i < std::max(ba, bb); ++i) {
    const std::int64_t x = i < ba ? sa[ba - 1 - i] : 1, y = i < bb ? sb[bb - 1 - i] : 1;
    batch *= double(std::max(x, y));
  }
  return 2 * batch * m * k * n;
}

double matmul_flops(const ArrayView& a, const ArrayView& b) {
  return matmul_flops(a.shape(), b.shape());
}

BlasKernel blas_kernel() {
  return {detail::kernel_here(), detail::worker_kernel()};
}

DType result_dtype(DType a, DType b) {
  return result_type(a, b);
}

DType result_dtype(const ArrayView& a, const ArrayView& b) {
  return result_type(a.dtype(), b.dtype());
}

namespace {

// Product i of a stack of windows (detail::stack_windows), out of the one product `joined`
// (2-D, C order), copied into `to` (count x m x n, any strides).
void copy_windows(const OwnedArray& joined, const detail::StackWindows& w,
                  const MutableArrayView& to) {
  const std::vector<std::int64_t>& shape = to.shape();
  const std::vector<std::int64_t>& strides = to.strides();
  auto* dest = static_cast<std::byte*>(to.mutable_data());
  for (std::int64_t i = 0; i < shape[0]; ++i)
    detail::copy_window(static_cast<const std::byte*>(joined.view.data()),
                        static_cast<std::size_t>(joined.view.shape()[1]), item_size(to.dtype()),
                        w.by_columns, static_cast<std::uint64_t>(i) * w.step,
                        static_cast<std::size_t>(shape[1]), static_cast<std::size_t>(shape[2]),
                        dest + i * strides[0], strides[1], strides[2]);
}

// The one body of both matmul forms: into `out`, or (out == nullptr) into a new array, made
// once the plan is known and returned in `made`. `options` is this call's copy: the plan
// decides its launch.
Report run_matmul(const ArrayView& a, const ArrayView& b, const MutableArrayView* out,
                  Options options, OwnedArray* made) {
  const auto start = std::chrono::steady_clock::now();
  detail::Product p;
  p.result = detail::check_arrays(a, b, out).result;
  // numpy's rule for an `out` that shares memory with an operand: the product is computed into
  // a new array first, then copied in.
  if (out && (detail::may_share_memory(a, *out) || detail::may_share_memory(b, *out))) {
    OwnedArray temp;
    Report report = run_matmul(a, b, nullptr, options, &temp);
    detail::scatter_from(static_cast<const std::byte*>(temp.view.data()), *out);
    report.copied_bytes += static_cast<std::uint64_t>(out->size()) * item_size(out->dtype());
    report.seconds = seconds_since(start);
    return report;
  }
  // A stack of overlapping windows of one array: one product over their union, each window's
  // product copied out of it.
  if (const std::optional<detail::StackWindows> w = detail::stack_windows(a, b)) {
    OwnedArray joined;
    Report report = run_matmul(w->a, w->b, nullptr, options, &joined);
    const std::vector<std::int64_t> shape = matmul_shape(a, b);
    if (made) {
      std::uint64_t bytes = item_size(p.result);
      for (std::int64_t d : shape)
        bytes *= static_cast<std::uint64_t>(d);
      detail::NewResult c(bytes, false);
      *made = {MutableArrayView(c.area(Launch::fork).local, p.result, shape), c.release()};
    }
    const MutableArrayView& to = made ? made->view : *out;
    copy_windows(joined, *w, to);
    const double stack_flops = matmul_flops(a, b), union_flops = matmul_flops(w->a, w->b);
    auto dims = [](const std::vector<std::int64_t>& s) {
      return std::vector<std::uint64_t>(s.begin(), s.end());
    };
    report.batch = w->count;
    report.m = static_cast<std::uint64_t>(shape[1]);
    report.k = static_cast<std::uint64_t>(a.shape().back());
    report.n = static_cast<std::uint64_t>(shape[2]);
    report.a_shape = dims(a.shape());
    report.b_shape = dims(b.shape());
    report.shape = dims(shape);
    report.copied_bytes += static_cast<std::uint64_t>(to.size()) * item_size(to.dtype());
    report.plan_reason = fmt::format(
        "a stack of {} overlapping windows of one array, computed as one product over their "
        "union ({:.3g} GFLOP instead of {:.3g}); {}",
        w->count, union_flops / 1e9, stack_flops / 1e9, report.plan_reason);
    report.seconds = seconds_since(start);
    return report;
  }
  // What stops this call: the interrupts that arrive from here on, and its timeout.
  const detail::StopScope interrupts(options.timeout, options.stop);
  detail::check_options(options, detail::Entry::matmul);
  Report report;
  report.launch = options.launch;
  report.backing = Backing::shm;
  // Operands whose strides the kernels cannot follow (negative, or not whole elements) are
  // copied once, in C order.
  std::vector<std::byte> a_copy, b_copy;
  auto operand = [&report](const ArrayView& v, std::vector<std::byte>& copy) {
    if (std::optional<detail::Operand> op = detail::operand_in_place(v)) return *op;
    copy.resize(static_cast<std::size_t>(v.size()) * item_size(v.dtype()));
    report.copied_bytes += copy.size();
    return detail::gather_into(v, copy.data());
  };
  p.a = operand(a, a_copy);
  p.b = operand(b, b_copy);
  p.shape = matmul_shape(p.a.shape, p.b.shape, "", "");
  p.describe(report);
  auto done = [&] {
    report.seconds = seconds_since(start);
    return report;
  };
  const std::vector<std::int64_t> shape(p.shape.out_shape.begin(), p.shape.out_shape.end());
  const std::uint64_t c_bytes = p.c_elements() * item_size(p.result);
  // A new result that needs no workers (empty, or k = 0: numpy's zeros).
  auto make_small = [&] {
    detail::NewResult c(c_bytes, false);
    *made = {MutableArrayView(c.area(options.launch).local, p.result, shape), c.release()};
    return made->view;
  };
  if (p.c_elements() == 0) {
    if (made) make_small();
    return done();
  }
  if (p.shape.k == 0) {
    detail::fill_zeros(made ? make_small() : *out);
    return done();
  }
  const detail::Plan plan = detail::plan_call(p, options, report);
  const std::unique_ptr<detail::Executor> executor = detail::one_shot_executor(plan, options);
  if (made) {
    detail::NewResult c(c_bytes, !plan.in_process);
    detail::Placement placement(p, c, options.launch, !plan.in_process);
    detail::execute(*executor, p, plan, options, report);
    detail::throw_if_interrupted(/*deadline=*/false);
    report.copied_bytes += placement.copied_bytes();
    const std::shared_ptr<void> memory = c.release();
    *made = {MutableArrayView(memory.get(), p.result, shape), memory};
    return done();
  }
  detail::Placement placement(p, *out, options.launch, !plan.in_process);
  detail::execute(*executor, p, plan, options, report);
  detail::throw_if_interrupted(/*deadline=*/false);
  placement.finish();
  report.copied_bytes += placement.copied_bytes();
  return done();
}

}  // namespace

namespace legacy {

Report matmul_all(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                  const Options& options) {
  return run_matmul(a, b, &out, options, nullptr);
}

OwnedArray matmul_all(const ArrayView& a, const ArrayView& b, const Options& options,
                      Report* report) {
  OwnedArray made;
  const Report r = run_matmul(a, b, nullptr, options, &made);
  if (report) *report = r;
  return made;
}

namespace {

// The matrix overloads: numpy's 2-D rules, with the messages they always had.
template <class T>
Report matmul_matrices(MatrixView<const T> a, MatrixView<const T> b, MatrixView<T> c,
                       const Options& options) {
  detail::check_product_shapes(detail::ref_of(a), detail::ref_of(b), detail::ref_of(c));
  return matmul_all(detail::array_view(a), detail::array_view(b), detail::array_view(c), options);
}

}  // namespace

Report matmul_all(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c,
                  const Options& options) {
  return matmul_matrices<double>(a, b, c, options);
}

Report matmul_all(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c,
                  const Options& options) {
  return matmul_matrices<float>(a, b, c, options);
}

}  // namespace legacy

Report matmul_into(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                   const MatmulOptions& options) {
  return legacy::matmul_all(a, b, out, detail::all_options(options));
}

OwnedArray matmul(const ArrayView& a, const ArrayView& b, const MatmulOptions& options,
                  Report* report) {
  return legacy::matmul_all(a, b, detail::all_options(options), report);
}

Report matmul_into(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c,
                   const MatmulOptions& options) {
  return legacy::matmul_all(a, b, c, detail::all_options(options));
}

Report matmul_into(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c,
                   const MatmulOptions& options) {
  return legacy::matmul_all(a, b, c, detail::all_options(options));
}

}  // namespace shmgemm
