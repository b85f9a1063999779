// The front end: check the operands, plan, place, run, write. Degenerate shapes leave early.
#include <sched.h>

#include <fmt/format.h>
#include <chrono>

#include "common/job.hpp"
#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "engine/general.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "engine/progress.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm {

double Report::gflops() const {
  return seconds > 0 ? 2.0 * double(batch) * double(m) * double(n) * double(k) / seconds / 1e9
                     : 0.0;
}

unsigned available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  const int count = CPU_COUNT(&set);
  return count > 0 ? static_cast<unsigned>(count) : 1;
}

std::string_view to_string(Launch launch) {
  return launch == Launch::fork ? "fork" : "spawn";
}
std::string_view to_string(Backing backing) {
  return backing == Backing::shm ? "shm" : "file";
}

Report multiply_npy(const std::filesystem::path& a_path, const std::filesystem::path& b_path,
                    const std::filesystem::path& out_path, const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  // What stops this run: the interrupts that arrive from here on, and its timeout.
  const detail::StopScope interrupts(options.timeout);
  detail::check_options(options, detail::Entry::files);
  const NpyMapping a = NpyMapping::open(a_path);
  const NpyMapping b = NpyMapping::open(b_path);
  // numpy's shape rules and messages for every product, the 2-D float ones included.
  const MatmulShape shape = detail::npy_matmul_shape(a, b);
  if (detail::needs_general_product(a.header(), b.header()))
    return detail::multiply_general(a, b, shape, out_path, options, start);

  Report report;
  report.m = shape.m;
  report.k = shape.k;
  report.n = shape.n;
  const DType dtype = a.header().dtype;
  report.dtype = dtype_name(dtype);
  report.launch = options.launch;
  report.backing = options.backing;
  report.in_process = options.in_process;
  auto finish = [&](NpyOutput& out) {
    // An interrupt that came during a step that cannot be stopped still leaves C.npy alone.
    detail::throw_if_interrupted();
    out.commit(options.fsync);
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };

  const std::uint64_t c_shape[] = {report.m, report.n};
  NpyOutput out = NpyOutput::create(out_path, dtype, c_shape);

  // Nothing to compute: an empty C, or (k = 0) zeros, which the new file already holds.
  if (report.m == 0 || report.n == 0 || report.k == 0) return finish(out);

  // Larger than memory: stream through A and C a step of rows at a time.
  Options run_options = options;
  run_options.rows_per_step = detail::streaming_rows(
      options, a.header().data_bytes + b.header().data_bytes + out.header().data_bytes);
  report.rows_per_step = run_options.rows_per_step;
  const detail::Plan plan =
      detail::plan_product({report.m, report.k, report.n, dtype}, run_options, report);
  if (plan.in_process) {
    const auto t = std::chrono::steady_clock::now();
    detail::compute_in_process(dtype, a.matrix(), b.matrix(), out.matrix(), plan, run_options);
    report.compute_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    return finish(out);
  }

  // Fail before computing when /dev/shm cannot hold what this run puts there.
  std::uint64_t shm_bytes = sizeof(JobDescriptor);
  if (options.backing == Backing::shm)
    shm_bytes += a.header().data_bytes + b.header().data_bytes + out.header().data_bytes;
  check_shm_room(shm_bytes, options.backing == Backing::shm ? "A, B, C and the job descriptor"
                                                            : "the job descriptor");
  detail::Placement placement(a, b, out, options.backing);
  detail::run_and_finish(dtype, plan, placement, run_options, report);
  return finish(out);
}

}  // namespace shmgemm
