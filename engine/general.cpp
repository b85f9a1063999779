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
  OperandRef r;
  r.storage = storage;
  r.rows = elements;
  r.cols = 1;
  r.ld = 1;
  r.offset = offset;
  copy_name(r.name, name);
  return r;
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

void check_matmul_shapes(const NpyMapping& a, const NpyMapping& b) {
  matmul_shape(array_shape(a.header()), array_shape(b.header()), a.path(), b.path());
}

bool needs_general_product(const NpyHeader& a, const NpyHeader& b) {
  const bool plain_float = a.dtype == DType::float32 || a.dtype == DType::float64;
  return a.shape.size() != 2 || b.shape.size() != 2 || a.dtype != b.dtype || !plain_float;
}

Report multiply_general(const NpyMapping& a, const NpyMapping& b,
                        const std::filesystem::path& out_path, const Options& options,
                        std::chrono::steady_clock::time_point start) {
  const NpyHeader& ha = a.header();
  const NpyHeader& hb = b.header();
  const MatmulShape shape = matmul_shape(array_shape(ha), array_shape(hb), a.path(), b.path());
  for (std::uint64_t d : {shape.m, shape.k, shape.n})
    if (d > static_cast<std::uint64_t>(INT_MAX))
      throw Error(ErrorCode::unsupported,
                  fmt::format("{} @ {}: dimension {} exceeds {}, the largest that OpenBLAS's "
                              "32-bit interface takes",
                              a.path(), b.path(), d, INT_MAX));
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
    out.commit();
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };
  // Nothing to compute: an empty C, or (k = 0) zeros, which the new file already holds.
  if (shape.batch == 0 || shape.m == 0 || shape.n == 0 || shape.k == 0) return finish();

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
  job.a = column_ref(Storage::file, std::filesystem::absolute(a.path()), ha.data_offset,
                     ha.element_count);
  job.b = column_ref(Storage::file, std::filesystem::absolute(b.path()), hb.data_offset,
                     hb.element_count);
  job.c = column_ref(Storage::file, out.path_for_workers(), out.header().data_offset,
                     out.header().element_count);

  const bool single = compute == DType::float32 || compute == DType::complex64;
  Plan plan = plan_product({rows, shape.k, shape.n, single ? DType::float32 : DType::float64},
                           options, report);
  GeneralOperands ops{a.data(), b.data(), out.data(), nullptr};
  std::vector<std::byte> local_prepared;
  std::optional<SharedSegment> prepared;
  const std::size_t prepared_item = item_size(compute);
  auto prepared_bytes = [&] { return prepared_elements(g, shape.k, shape.n) * prepared_item; };
  const auto t0 = std::chrono::steady_clock::now();

  if (plan.in_process) {
    set_blas_threads(static_cast<int>(plan.threads_per_worker));
    if (g.integer) {
      std::uint64_t max_a = 0, max_b = 0;
      scan_share(g, ops, 0, 1, max_a, max_b);
      g.limbs = plan_limbs(max_a, max_b, shape.k, dtype_bits(result));
    }
    if (g.b_prepared) {
      local_prepared.resize(prepared_bytes());
      ops.prepared = local_prepared.data();
      prepare_rows(g, shape.k, shape.n, ops, prepare_share(g, shape.k, 0, 1));
      report.prepared_bytes = local_prepared.size();
    }
    ProgressBar bar(options.progress, rows, 2.0 * double(shape.k) * double(shape.n));
    multiply_rows(g, shape.k, shape.n, ops, {0, rows}, kChunkRows, [&](std::uint64_t done) {
      bar.update(done);
      throw_if_interrupted();
    });
  } else {
    split_rows(plan, shape.batch, shape.m, shape.n, result);
    job.workers = static_cast<std::uint32_t>(plan.workers);
    job.threads_per_worker = static_cast<std::uint32_t>(plan.threads_per_worker);
    for (std::size_t i = 0; i < plan.workers; ++i) {
      job.slots[i].row_begin = plan.rows[i].begin;
      job.slots[i].row_end = plan.rows[i].end;
    }
    check_shm_room(sizeof(JobDescriptor), "the job descriptor");
    auto unlink_names = [&] {
      described.segment.unlink();
      if (prepared) prepared->unlink();
    };
    JobDescriptor* j = &job;
    const GeneralOperands* current = &ops;
    auto fork_body = [j, current](std::size_t i) {
      return run_worker(*j, i, {{}, {}, {}, *current});
    };
    auto run_phase = [&](Phase phase, double flops_per_row) {
      g.phase = phase;
      const RunStats stats =
          launch_and_join(job, described.segment.name(), plan, fork_body, unlink_names,
                          phase == Phase::multiply, options, flops_per_row);
      report.retries += stats.retries;
    };
    if (g.integer) {
      run_phase(Phase::scan, 0);
      std::uint64_t max_a = 0, max_b = 0;
      for (std::size_t i = 0; i < plan.workers; ++i) {
        max_a = std::max(max_a, job.slots[i].max_a);
        max_b = std::max(max_b, job.slots[i].max_b);
      }
      g.limbs = plan_limbs(max_a, max_b, shape.k, dtype_bits(result));
    }
    if (g.b_prepared) {
      check_shm_room(prepared_bytes(), "the converted B");
      prepared = SharedSegment::create("bprep", std::max<std::uint64_t>(prepared_bytes(), 1));
      job.prepared =
          column_ref(Storage::shm, prepared->name(), 0, prepared_elements(g, shape.k, shape.n));
      ops.prepared = prepared->data();
      report.prepared_bytes = prepared_bytes();
      run_phase(Phase::prepare, 0);
    }
    run_phase(Phase::multiply, 2.0 * double(shape.k) * double(shape.n));
  }
  report.limb_products = g.integer ? g.limbs.products : 0;
  report.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return finish();
}

}  // namespace shmgemm::detail
