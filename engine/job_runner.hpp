// Runs one product's workers over placed operands: describe, launch, join, retry, report.
#pragma once

#include <functional>
#include <new>
#include <string>

#include "common/dtype.hpp"
#include "common/job.hpp"
#include "common/segment.hpp"
#include "engine/placement.hpp"
#include "engine/plan.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// A job descriptor in a new shared segment ("job"), destroyed before the segment goes.
struct JobSegment {
  SharedSegment segment = SharedSegment::create("job", sizeof(JobDescriptor));
  JobDescriptor* job = new (segment.data()) JobDescriptor{};
  JobSegment() = default;
  JobSegment(const JobSegment&) = delete;
  JobSegment& operator=(const JobSegment&) = delete;
  ~JobSegment() { job->~JobDescriptor(); }
};

// The plan for `shape` as `options` ask, reading the calibration only when the cost model
// needs it; records the plan in the report (automatic, candidates, reason, calibration,
// threads, workers, in_process).
Plan plan_product(const ProductShape& shape, const Options& options, Report& report);

// Rows of C per step when streaming a product whose A, B and C take `bytes` (file backing):
// options.rows_per_step, or kChunkRows when they do not fit in memory_available(); 0: no
// streaming. Throws Error for --rows-per-step with the shm backing.
std::uint64_t streaming_rows(const Options& options, std::uint64_t bytes);

// Computes all rows of c = a·b in this process with the plan's threads; in chunks with a
// progress bar when options.progress, and releasing each chunk's rows of A and C when
// options.rows_per_step > 0. c must be row-major.
void compute_in_process(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b,
                        const MatrixRef& c, const Plan& plan, const Options& options);

struct RunStats {
  double compute_seconds = 0;  // first launch to last join
  unsigned retries = 0;
};

// Launches plan.workers workers over `placement` and joins them. A failed block
// is recomputed by a fresh worker up to options.retries times; past that, throws
// Error(worker_failed) naming the worker and its rows, with the other workers killed.
// Throws Error(interrupted) when an interrupt arrives (see handle_interrupts()).
RunStats run_workers(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n,
                     const Plan& plan, Placement& placement, const Options& options);

// Launches plan.workers workers of `job`, which lives in the segment that `job_name` reaches
// (/proc/<pid>/fd/N), and joins them: forked ones run fork_body(id), spawned ones
// shmgemm-worker --job --id. Resets every slot's state first (a job may be launched once per
// phase). Retries, failures, interrupts and timeouts as run_workers;
// a progress bar over job.m rows of flops_per_row flops each when options.progress and
// flops_per_row > 0.
RunStats launch_and_join(JobDescriptor& job, const std::string& job_name, const Plan& plan,
                         const std::function<int(std::size_t)>& fork_body, const Options& options,
                         double flops_per_row);

// run_workers, then finish() the placement; records compute seconds, retries and copied bytes
// in the report.
void run_and_finish(DType dtype, const Plan& plan, Placement& placement, const Options& options,
                    Report& report);

}  // namespace shmgemm::detail
