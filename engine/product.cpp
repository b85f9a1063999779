#include "engine/product.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>

#include "common/clock.hpp"
#include "common/limbs.hpp"
#include "common/npy.hpp"
#include "common/promote.hpp"
#include "engine/interrupt.hpp"

namespace shmgemm::detail {
namespace {

std::vector<std::uint64_t> unsigned_shape(const std::vector<std::int64_t>& shape) {
  return {shape.begin(), shape.end()};
}

void copy_dims(const std::vector<std::uint64_t>& from, std::uint64_t* to) {
  std::copy(from.begin(), from.end(), to);
}

StackRef stack_ref(const StackOperand& s, DType dtype, std::uint64_t elements) {
  StackRef r;
  r.dtype = dtype;
  r.batch_ndim = static_cast<std::uint32_t>(s.batch_shape.size());
  r.elements = elements;
  r.rows = s.rows;
  r.cols = s.cols;
  r.row_stride = s.row_stride;
  r.col_stride = s.col_stride;
  copy_dims(s.batch_shape, r.batch_shape);
  copy_dims(s.batch_strides, r.batch_strides);
  copy_dims(s.broadcast_strides, r.broadcast_strides);
  return r;
}

// A whole extent as a job operand: a column of `elements` elements, found as `where` says.
OperandRef column_ref(const OperandRef& where, std::uint64_t elements) {
  OperandRef r = where;
  r.layout = Layout::row_major;
  r.rows = elements;
  r.cols = 1;
  r.ld = 1;
  return r;
}

// Calls f(byte offset in the view, element index in C order) for every element of `v`.
template <class F>
void for_each_element(const ArrayView& v, F&& f) {
  const std::size_t nd = v.ndim();
  if (v.size() == 0) return;
  std::vector<std::int64_t> index(nd, 0);
  std::int64_t offset = 0;
  for (std::int64_t e = 0, count = v.size(); e < count; ++e) {
    f(offset, e);
    for (std::size_t i = nd; i-- > 0;) {
      if (++index[i] < v.shape()[i]) {
        offset += v.strides()[i];
        break;
      }
      offset -= v.strides()[i] * (v.shape()[i] - 1);
      index[i] = 0;
    }
  }
}

}  // namespace

ProductShape Product::work() const {
  const DType compute = compute_type(result);
  const bool single = compute == DType::float32 || compute == DType::complex64;
  return {shape.batch * shape.m,
          shape.k,
          shape.n,
          single ? DType::float32 : DType::float64,
          std::max<std::uint64_t>(shape.batch, 1),
          item_size(result)};
}

void check_blas_dims(std::span<const std::uint64_t> a_dims, std::span<const std::uint64_t> b_dims,
                     std::string_view a_name, std::string_view b_name) {
  for (int which = 0; which < 2; ++which) {
    const auto dims = which == 0 ? a_dims : b_dims;
    for (std::size_t i = dims.size() < 2 ? 0 : dims.size() - 2; i < dims.size(); ++i)
      if (dims[i] > static_cast<std::uint64_t>(INT_MAX)) {
        const std::string_view name = which == 0 ? a_name : b_name;
        throw Error(
            ErrorCode::unsupported,
            fmt::format("{}{}dimension {} of shape {} exceeds {}, the largest that "
                        "OpenBLAS's 32-bit interface takes",
                        name, name.empty() ? "" : ": ", dims[i], shape_string(dims), INT_MAX));
      }
  }
}

std::optional<MatrixProduct> accepted_matrices(const ArrayView& a, const ArrayView& b) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.shape()[1] != b.shape()[0]) return std::nullopt;
  for (const ArrayView* v : {&a, &b})
    if (v->data() == nullptr || v->shape()[0] <= 0 || v->shape()[1] <= 0 ||
        v->shape()[0] > INT_MAX || v->shape()[1] > INT_MAX)
      return std::nullopt;
  return MatrixProduct{a.shape()[0], b.shape()[1], result_type(a.dtype(), b.dtype())};
}

Checked check_arrays(const ArrayView& a, const ArrayView& b, const MutableArrayView* out) {
  // A null pointer to elements there are: the view of no array.
  using Named = std::pair<const ArrayView*, const char*>;
  for (const auto& [view, name] : {Named{&a, "a"}, Named{&b, "b"}, Named{out, "out"}})
    if (view && view->data() == nullptr && view->size() > 0)
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: a null data pointer for shape {}", name,
                              shape_string(unsigned_shape(view->shape()))));
  const std::vector<std::uint64_t> sa = unsigned_shape(a.shape()), sb = unsigned_shape(b.shape());
  Checked c;
  c.shape = matmul_shape(ArrayShape{sa, contiguous_strides(sa, false)},
                         ArrayShape{sb, contiguous_strides(sb, false)}, "", "");
  check_blas_dims(sa, sb, "", "");
  c.result = result_type(a.dtype(), b.dtype());
  if (out == nullptr) return c;
  if (out->dtype() != c.result)
    throw Error(
        ErrorCode::invalid_argument,
        fmt::format("out: dtype {}, where np.matmul({}, {}) gives {}", dtype_name(out->dtype()),
                    dtype_name(a.dtype()), dtype_name(b.dtype()), dtype_name(c.result)));
  if (unsigned_shape(out->shape()) != c.shape.out_shape)
    throw Error(ErrorCode::shape_mismatch,
                fmt::format("out: shape {}, where the product of {} and {} has shape {}",
                            shape_string(unsigned_shape(out->shape())), shape_string(sa),
                            shape_string(sb), shape_string(c.shape.out_shape)));
  return c;
}

std::optional<Operand> operand_in_place(const ArrayView& v) {
  const auto item = static_cast<std::int64_t>(item_size(v.dtype()));
  Operand op;
  op.dtype = v.dtype();
  op.local = static_cast<const std::byte*>(v.data());
  op.shape.shape = unsigned_shape(v.shape());
  op.elements = v.size() > 0 ? 1 : 0;
  for (std::size_t i = 0; i < v.ndim(); ++i) {
    const std::int64_t dim = v.shape()[i], stride = v.strides()[i];
    if (dim > 1 && (stride < 0 || stride % item != 0)) return std::nullopt;
    const std::uint64_t elements = dim > 1 ? static_cast<std::uint64_t>(stride / item) : 0;
    op.shape.strides.push_back(elements);
    if (dim > 1) op.elements += static_cast<std::uint64_t>(dim - 1) * elements;
  }
  return op;
}

Operand gather_into(const ArrayView& v, std::byte* to) {
  const std::size_t item = item_size(v.dtype());
  const auto* from = static_cast<const std::byte*>(v.data());
  for_each_element(v, [&](std::int64_t offset, std::int64_t e) {
    std::memcpy(to + static_cast<std::size_t>(e) * item, from + offset, item);
  });
  return *operand_in_place(ArrayView(to, v.dtype(), v.shape()));
}

void scatter_from(const std::byte* from, const MutableArrayView& out) {
  const std::size_t item = item_size(out.dtype());
  auto* to = static_cast<std::byte*>(out.mutable_data());
  if (out.is_c_contiguous()) {
    if (from != to) std::memmove(to, from, static_cast<std::size_t>(out.size()) * item);
    return;
  }
  for_each_element(out, [&](std::int64_t offset, std::int64_t e) {
    std::memcpy(to + offset, from + static_cast<std::size_t>(e) * item, item);
  });
}

void fill_zeros(const MutableArrayView& out) {
  const std::vector<std::byte> zeros(static_cast<std::size_t>(out.size()) * item_size(out.dtype()));
  scatter_from(zeros.data(), out);
}

void Product::describe(Report& report) const {
  report.m = shape.m;
  report.k = shape.k;
  report.n = shape.n;
  report.batch = shape.batch;
  report.a_shape = a.shape.shape;
  report.b_shape = b.shape.shape;
  report.shape = shape.out_shape;
  report.dtype = dtype_name(result);
}

void describe_job(JobDescriptor& job, const Product& p, const Plan& plan, const Options& options) {
  const MatmulShape& shape = p.shape;
  GeneralJob& g = job.general;
  job.staged = 0;  // the executor stages the phases of workers it launches
  g.result = p.result;
  g.compute = compute_type(p.result);
  g.integer = is_integer(p.result) ? 1 : 0;
  g.batch_ndim = static_cast<std::uint32_t>(shape.batch_shape.size());
  g.batch = shape.batch;
  copy_dims(shape.batch_shape, g.batch_shape);
  g.a = stack_ref(shape.a, p.a.dtype, p.a.elements);
  g.b = stack_ref(shape.b, p.b.dtype, p.b.elements);
  g.b_prepared = g.integer || p.b.dtype != g.compute ||
                 !blas_view(nullptr, shape.k, shape.n, g.b.row_stride, g.b.col_stride);
  const std::uint64_t rows = shape.batch * shape.m;
  job.coordinator_pid = ::getpid();
  job.m = rows;
  job.k = shape.k;
  job.n = shape.n;
  // Rows per BLAS call: each worker publishes its progress after each. In process, one call for
  // all of C unless something must happen between steps (a progress bar, an interrupt or a
  // timeout that may stop the call, pages to release).
  // In process, a step is ~4e10 flops (0.2-0.4 s at this machine's rates), in steps of equal
  // rows: each BLAS call packs B again, which 512-row steps of a 4000^2 product pay 8% for.
  const bool stoppable = call_is_stoppable() || options.timeout > 0;
  std::uint64_t step = options.rows_per_step ? options.rows_per_step : kChunkRows;
  if (plan.in_process && !options.rows_per_step) {
    constexpr double kStepFlops = 4e10;
    const double row_flops = 2.0 * double(shape.k) * double(shape.n);
    const auto steps = static_cast<std::uint64_t>(std::ceil(double(rows) * row_flops / kStepFlops));
    step = !options.progress && !stoppable
               ? rows
               : std::max(kChunkRows, (rows + std::max<std::uint64_t>(steps, 1) - 1) /
                                          std::max<std::uint64_t>(steps, 1));
  }
  job.chunk_rows = std::max<std::uint64_t>(step, 1);
  job.stream = options.rows_per_step > 0 ? 1 : 0;
  job.copy_inputs = options.copy_inputs ? 1 : 0;
  copy_name(job.label_a, p.a.label);
  copy_name(job.label_b, p.b.label);
  job.a = column_ref(p.a.ref, p.a.elements);
  job.b = column_ref(p.b.ref, p.b.elements);
  job.c = column_ref(p.c.ref, p.c_elements());
  job.workers = static_cast<std::uint32_t>(plan.in_process ? 1 : plan.rows.size());
  job.threads_per_worker = static_cast<std::uint32_t>(plan.threads_per_worker);
  for (std::size_t i = 0; i < job.workers; ++i) {
    job.slots[i].row_begin = plan.in_process ? 0 : plan.rows[i].begin;
    job.slots[i].row_end = plan.in_process ? rows : plan.rows[i].end;
  }
}

std::optional<Phase> Phases::next(
    const std::function<std::byte*(std::uint64_t, std::uint64_t)>& prepared, Report& report,
    GeneralOperands& local) {
  GeneralJob& g = job_.general;
  auto start = [&](Phase phase, int step) {
    g.phase = phase;
    step_ = step;
    return phase;
  };
  switch (step_) {
    case 0:
      if (g.integer) return start(Phase::scan, 1);
      [[fallthrough]];
    case 1:
      if (g.integer) {
        std::uint64_t max_a = 0, max_b = 0;
        for (std::size_t i = 0; i < job_.workers; ++i) {
          max_a = std::max(max_a, job_.slots[i].max_a);
          max_b = std::max(max_b, job_.slots[i].max_b);
        }
        g.limbs = plan_limbs(max_a, max_b, job_.k, dtype_bits(g.result));
        report.limb_products = g.limbs.products;
      }
      if (g.b_prepared) {
        const std::uint64_t elements = prepared_elements(g, job_.k, job_.n);
        report.prepared_bytes = elements * item_size(g.compute);
        local.prepared = prepared(report.prepared_bytes, elements);
        return start(Phase::prepare, 2);
      }
      [[fallthrough]];
    case 2:
      return start(Phase::multiply, 3);
    default:
      return std::nullopt;
  }
}

void execute(Executor& executor, const Product& p, const Plan& plan, const Options& options,
             Report& report) {
  JobDescriptor& job = executor.job();
  describe_job(job, p, plan, options);
  GeneralOperands local{p.a.local, p.b.local, p.c.local, nullptr};
  Phases phases(job);
  const double flops_per_row = 2.0 * double(p.shape.k) * double(p.shape.n);
  const auto t0 = std::chrono::steady_clock::now();
  auto prepared = [&](std::uint64_t bytes, std::uint64_t elements) {
    return executor.prepared_area(bytes, elements);
  };
  while (const std::optional<Phase> phase = phases.next(prepared, report, local))
    executor.run(local, *phase == Phase::multiply ? flops_per_row : 0);
  report.compute_seconds = seconds_since(t0);
  report.retries = executor.retries;
  report.launches = executor.launches;
}

}  // namespace shmgemm::detail
