#include "engine/general.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <vector>

#include "common/matmul_shape.hpp"
#include "common/promote.hpp"
#include "common/segment.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/progress.hpp"
#include "worker/general_kernel.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/worker_run.hpp"

namespace shmgemm::detail {
namespace {

void check_general_options(const Options& o, std::string_view product) {
  auto refuse = [&](std::string_view option) {
    throw Error(ErrorCode::unsupported,
                fmt::format("{}: applies to 2-D products of one float dtype; {} runs on the "
                            "mapped files (--backing file)",
                            option, product));
  };
  if (o.backing == Backing::shm) refuse("--backing shm");
  if (o.copy_inputs) refuse("--inputs copy");
  if (o.rows_per_step) refuse("--rows-per-step");
}

ArrayShape array_shape(const NpyHeader& h) {
  return {h.shape, contiguous_strides(h.shape, h.fortran_order)};
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

// A whole array as a job operand: a column of `elements` elements.
OperandRef column_ref(Storage storage, const std::string& name, std::uint64_t offset,
                      std::uint64_t elements) {
  return operand_ref(ConstMatrixRef{nullptr, elements, 1, 1, Layout::row_major}, storage, name,
                     offset);
}

// Workers' rows of the flattened C: whole products when there are enough of them, else rows
// inside products at cache-line boundaries.
void split_rows(Plan& plan, std::uint64_t batch, std::uint64_t m, std::uint64_t n, DType result) {
  const std::uint64_t rows = batch * m;
  const std::size_t unit =
      batch >= plan.workers
          ? m
          : plan_row_split(rows, plan.workers, cache_line_rows(n, item_size(result))).block_factor;
  plan.block_factor = unit;
  plan.rows.clear();
  for (std::size_t i = 0; i < plan.workers; ++i)
    plan.rows.push_back(partition_rows(rows, plan.workers, i, unit));
}

}  // namespace

MatmulShape npy_matmul_shape(const NpyMapping& a, const NpyMapping& b) {
  MatmulShape shape =
      matmul_shape(array_shape(a.header()), array_shape(b.header()), a.path(), b.path());
  for (const NpyMapping* f : {&a, &b}) {
    const auto& dims = f->header().shape;
    for (std::size_t i = dims.size() < 2 ? 0 : dims.size() - 2; i < dims.size(); ++i)
      if (dims[i] > static_cast<std::uint64_t>(INT_MAX))
        throw Error(ErrorCode::unsupported,
                    fmt::format("{}: dimension {} of shape {} exceeds {}, the largest that "
                                "OpenBLAS's 32-bit interface takes",
                                f->path(), dims[i], shape_string(dims), INT_MAX));
  }
  return shape;
}

bool needs_general_product(const NpyHeader& a, const NpyHeader& b) {
  const bool plain_float = a.dtype == DType::float32 || a.dtype == DType::float64;
  return a.shape.size() != 2 || b.shape.size() != 2 || a.dtype != b.dtype || !plain_float;
}

Report multiply_general(const NpyMapping& a, const NpyMapping& b, const MatmulShape& shape,
                        const std::filesystem::path& out_path, const Options& options,
                        std::chrono::steady_clock::time_point start) {
  const NpyHeader& ha = a.header();
  const NpyHeader& hb = b.header();
  const DType result = result_type(ha.dtype, hb.dtype);
  const DType compute = compute_type(result);
  check_general_options(
      options, fmt::format("{} @ {} ({} @ {} -> {})", a.path(), b.path(), dtype_name(ha.dtype),
                           dtype_name(hb.dtype), dtype_name(result)));

  Report report;
  report.m = shape.m;
  report.k = shape.k;
  report.n = shape.n;
  report.batch = shape.batch;
  report.dtype = dtype_name(result);
  report.launch = options.launch;
  report.backing = Backing::file;
  report.in_process = options.in_process;
  NpyOutput out = NpyOutput::create(out_path, result, shape.out_shape);
  auto finish = [&] {
    throw_if_interrupted();
    out.commit(options.fsync);
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };
  // Nothing to compute: an empty C, or (k = 0) zeros, which the new file already holds.
  if (shape.batch == 0 || shape.m == 0 || shape.n == 0 || shape.k == 0) return finish();

  check_shm_room(sizeof(JobDescriptor), "the job descriptor");
  JobSegment described;
  JobDescriptor& job = *described.job;
  GeneralJob& g = job.general;
  g.result = result;
  g.compute = compute;
  g.integer = is_integer(result) ? 1 : 0;
  g.batch_ndim = static_cast<std::uint32_t>(shape.batch_shape.size());
  g.batch = shape.batch;
  copy_dims(shape.batch_shape, g.batch_shape);
  g.a = stack_ref(shape.a, ha.dtype, ha.element_count);
  g.b = stack_ref(shape.b, hb.dtype, hb.element_count);
  g.b_prepared = g.integer || hb.dtype != compute ||
                 !blas_view(nullptr, shape.k, shape.n, g.b.row_stride, g.b.col_stride);
  const std::uint64_t rows = shape.batch * shape.m;
  job.kind = JobKind::general;
  job.dtype = compute;
  job.coordinator_pid = ::getpid();
  job.m = rows;
  job.k = shape.k;
  job.n = shape.n;
  job.chunk_rows = kChunkRows;
  copy_name(job.label_a, a.path());
  copy_name(job.label_b, b.path());
  job.a = column_ref(Storage::file, a.path_for_workers(), ha.data_offset, ha.element_count);
  job.b = column_ref(Storage::file, b.path_for_workers(), hb.data_offset, hb.element_count);
  job.c = column_ref(Storage::file, out.path_for_workers(), out.header().data_offset,
                     out.header().element_count);

  const bool single = compute == DType::float32 || compute == DType::complex64;
  Plan plan = plan_product({rows, shape.k, shape.n, single ? DType::float32 : DType::float64},
                           options, report);
  // In process: the same phases, as the one worker of slot 0, which covers all of C.
  if (plan.in_process)
    plan.rows = {{0, rows}};
  else
    split_rows(plan, shape.batch, shape.m, shape.n, result);
  job.workers = static_cast<std::uint32_t>(plan.rows.size());
  job.threads_per_worker = static_cast<std::uint32_t>(plan.threads_per_worker);
  for (std::size_t i = 0; i < plan.rows.size(); ++i) {
    job.slots[i].row_begin = plan.rows[i].begin;
    job.slots[i].row_end = plan.rows[i].end;
  }
  if (plan.in_process) set_blas_threads(static_cast<int>(plan.threads_per_worker));

  GeneralOperands ops{a.data(), b.data(), out.data(), nullptr};
  std::vector<std::byte> local_prepared;
  std::optional<SharedSegment> prepared;
  JobDescriptor* j = &job;
  const GeneralOperands* current = &ops;
  auto fork_body = [j, current](std::size_t i) {
    return run_worker(*j, i, {{}, {}, {}, *current});
  };
  const double flops_per_row = 2.0 * double(shape.k) * double(shape.n);
  auto run = [&](Phase phase) {
    g.phase = phase;
    const bool last = phase == Phase::multiply;
    if (plan.in_process) {
      ProgressBar bar(options.progress && last, rows, flops_per_row);
      run_phase(job, 0, ops, [&](std::uint64_t done) {
        bar.update(done);
        throw_if_interrupted();
      });
      return;
    }
    report.retries += launch_and_join(job, described.segment.name(), plan, fork_body, options,
                                      last ? flops_per_row : 0)
                          .retries;
  };
  const auto t0 = std::chrono::steady_clock::now();
  if (g.integer) {
    run(Phase::scan);
    std::uint64_t max_a = 0, max_b = 0;
    for (std::size_t i = 0; i < job.workers; ++i) {
      max_a = std::max(max_a, job.slots[i].max_a);
      max_b = std::max(max_b, job.slots[i].max_b);
    }
    g.limbs = plan_limbs(max_a, max_b, shape.k, dtype_bits(result));
    report.limb_products = g.limbs.products;
  }
  if (g.b_prepared) {
    // B once, converted: this process's memory in process, else one segment all workers map.
    const std::uint64_t elements = prepared_elements(g, shape.k, shape.n);
    report.prepared_bytes = elements * item_size(compute);
    if (plan.in_process) {
      local_prepared.resize(report.prepared_bytes);
      ops.prepared = local_prepared.data();
    } else {
      check_shm_room(report.prepared_bytes, "the converted B");
      prepared = SharedSegment::create("bprep", std::max<std::uint64_t>(report.prepared_bytes, 1));
      job.prepared = column_ref(Storage::shm, prepared->name(), 0, elements);
      ops.prepared = prepared->data();
    }
    run(Phase::prepare);
  }
  run(Phase::multiply);
  report.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return finish();
}

}  // namespace shmgemm::detail
