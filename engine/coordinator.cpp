// multiply_npy: the .npy files' front end (open, check, create the output, place, execute,
// commit), and the small public helpers.
#include <sched.h>

#include <fmt/format.h>
#include <chrono>

#include "common/clock.hpp"
#include "common/job.hpp"
#include "common/npy_file.hpp"
#include "common/promote.hpp"
#include "common/segment.hpp"
#include "engine/host_blas.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/out_of_core.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "engine/product.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm {

unsigned available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  const int count = CPU_COUNT(&set);
  return count > 0 ? static_cast<unsigned>(count) : 1;
}

unsigned max_threads_per_worker() {
  return static_cast<unsigned>(blas_max_threads());
}

Launch automatic_launch() {
  return detail::resolve_launch(Launch::automatic);
}

std::string_view to_string(Launch launch) {
  return launch == Launch::fork ? "fork" : launch == Launch::spawn ? "spawn" : "auto";
}
std::string_view to_string(Backing backing) {
  return backing == Backing::shm ? "shm" : "file";
}

namespace detail {

MatmulShape npy_matmul_shape(const NpyMapping& a, const NpyMapping& b) {
  auto shape_of = [](const NpyHeader& h) {
    return ArrayShape{h.shape, contiguous_strides(h.shape, h.fortran_order)};
  };
  MatmulShape shape = matmul_shape(shape_of(a.header()), shape_of(b.header()), a.path(), b.path());
  check_blas_dims(a.header().shape, b.header().shape, a.path(), b.path());
  return shape;
}

}  // namespace detail

Report multiply_files(const std::filesystem::path& a, const std::filesystem::path& b,
                      const std::filesystem::path& out, const FileOptions& options) {
  return legacy::multiply_files_all(a, b, out, detail::all_options(options));
}

Report legacy::multiply_files_all(const std::filesystem::path& a_path,
                                  const std::filesystem::path& b_path,
                                  const std::filesystem::path& out_path, const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  // What stops this run: the interrupts that arrive from here on, and its timeout.
  const detail::StopScope interrupts(options.timeout, options.stop);
  detail::check_options(options, detail::Entry::files);
  const NpyMapping a = NpyMapping::open(a_path);
  const NpyMapping b = NpyMapping::open(b_path);
  // numpy's shape rules and messages.
  detail::Product p;
  p.shape = detail::npy_matmul_shape(a, b);
  p.result = result_type(a.header().dtype, b.header().dtype);
  auto operand = [](const NpyMapping& f) {
    const NpyHeader& h = f.header();
    detail::Operand op;
    op.local = f.data();
    op.dtype = h.dtype;
    op.shape = {h.shape, contiguous_strides(h.shape, h.fortran_order)};
    op.elements = h.element_count;
    op.label = f.path();
    return op;
  };
  p.a = operand(a);
  p.b = operand(b);
  Report report;
  p.describe(report);
  report.backing = options.backing;
  report.in_process = options.in_process;
  NpyOutput out = NpyOutput::create(out_path, p.result, p.shape.out_shape);
  auto finish = [&] {
    // An interrupt that came during a step that cannot be stopped still leaves C.npy alone.
    detail::throw_if_interrupted(/*deadline=*/false);
    out.commit(options.fsync);
    report.seconds = seconds_since(start);
    return report;
  };
  // Nothing to compute: an empty C, or (k = 0) zeros, which the new file already holds.
  if (p.empty()) return finish();

  // Larger than memory: stream through A and C a step of rows at a time, and when B does not
  // fit beside a step, take it in column panels.
  const std::uint64_t budget = detail::memory_budget(options);
  const std::uint64_t bytes =
      a.header().data_bytes + b.header().data_bytes + out.header().data_bytes;
  if (options.backing == Backing::file && bytes > budget &&
      detail::multiply_out_of_core(p, a, b, out, options, budget, report))
    return finish();
  Options run_options = options;
  run_options.rows_per_step =
      detail::streaming_rows(options, options.backing == Backing::file && bytes > budget);
  report.rows_per_step = run_options.rows_per_step;
  if (run_options.rows_per_step != 0) report.memory_budget = budget;
  const detail::Plan plan = detail::plan_call(p, run_options, report);
  if (!plan.in_process) {
    // Fail before computing when /dev/shm cannot hold what this run puts there.
    const bool shm = options.backing == Backing::shm;
    check_shm_room(
        sizeof(JobDescriptor) +
            (shm ? a.header().data_bytes + b.header().data_bytes + out.header().data_bytes : 0),
        shm ? "A, B, C and the job descriptor" : "the job descriptor");
  }
  detail::Placement placement(p, a, b, out, options.backing, !plan.in_process);
  const std::unique_ptr<detail::Executor> executor = detail::one_shot_executor(plan, run_options);
  detail::execute(*executor, p, plan, run_options, report);
  detail::throw_if_interrupted(/*deadline=*/false);
  placement.finish();
  report.copied_bytes = placement.copied_bytes();
  return finish();
}

}  // namespace shmgemm
