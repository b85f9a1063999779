// The one-shot executors (in process; workers launched for one call and joined) and the one
// loop that launches and joins workers.
#pragma once

#include <functional>
#include <new>
#include <string>

#include "common/dtype.hpp"
#include "common/job.hpp"
#include "common/segment.hpp"
#include "engine/plan.hpp"
#include "engine/product.hpp"
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

// A worker on `slot`'s rows as a failure names it: "worker 2 (rows 100-149)" (`who`: "worker",
// "pool worker").
std::string worker_name(std::string_view who, std::size_t id, const WorkerSlot& slot);
// How far it got, for a call that gave up on it: "worker 2 (rows 100-149) at 20 of 50 rows", and
// ", stopped by SIGSTOP" when a signal holds it (`stop_signal`; 0: none).
std::string worker_progress(std::string_view who, std::size_t id, const WorkerSlot& slot,
                            int stop_signal);

// The ErrorCode of a failure a worker reported in its slot or task, as it would have been in
// process; worker_failed when it was no shmgemm::Error (-1) or the code is unknown.
ErrorCode reported_code(std::int32_t code);

// The plan for `shape` as `options` ask, reading the calibration only when the cost model
// needs it; records the plan in the report (automatic, candidates, reason, calibration,
// threads, workers, in_process, launch). Where workers may run, Launch::automatic in
// options.launch is decided first (resolve_launch), so that the plan weighs the launch the
// workers will have; in-process products run on at most the caller's OpenBLAS thread count.
Plan plan_product(const ProductShape& shape, Options& options, Report& report);

// Rows of C per step when streaming a product whose A, B and C take `bytes` (file backing):
// options.rows_per_step, or kChunkRows when they do not fit in memory_available(); 0: no
// streaming.
std::uint64_t streaming_rows(const Options& options, std::uint64_t bytes);

struct RunStats {
  double compute_seconds = 0;  // first launch to last join
  unsigned retries = 0;
};

// Launches plan.workers workers of `job`, which lives in the segment that `job_name` reaches
// (/proc/<pid>/fd/N), and joins them: forked ones run fork_body(id), spawned ones
// shmgemm-worker --job --id. Resets every slot's state first (a job may be launched once per
// phase). A failed worker is started again on its rows up to options.retries times; past that,
// throws Error(worker_failed) naming it and its rows, with the other workers killed. Throws
// Error(interrupted) or Error(timed_out), naming the workers not done, when the call is stopped; a
// progress bar over job.m rows of flops_per_row flops each when options.progress and flops_per_row
// > 0.
RunStats launch_and_join(JobDescriptor& job, const std::string& job_name, const Plan& plan,
                         const std::function<int(std::size_t)>& fork_body, const Options& options,
                         double flops_per_row);

}  // namespace shmgemm::detail
