// The one-shot executors (in process; workers launched for one call and joined) and the one
// loop that launches and joins workers.
#pragma once

#include <functional>
#include <new>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "common/job.hpp"
#include "common/segment.hpp"
#include "engine/launcher.hpp"
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

// Rows of C per step when streaming: options.rows_per_step, or kChunkRows when A, B and C do
// not fit in the call's memory budget (`over_budget`, file backing); 0: no streaming.
std::uint64_t streaming_rows(const Options& options, bool over_budget);

struct RunStats {
  double compute_seconds = 0;  // first launch to last join
  unsigned retries = 0;
  unsigned launches = 0;  // worker processes started (retries included)
};

// The workers of one call's job, which lives in the segment that `job_name` reaches
// (/proc/<pid>/fd/N): forked ones run fork_body(id), spawned ones shmgemm-worker --job --id.
// They start with the job's first phase and, while job.staged says another follows, wait for
// it (run_phases) rather than exit: one launch serves every phase. A failed worker is started
// again on its rows up to options.retries times in all; past that, run() throws
// Error(worker_failed) naming it and its rows. run() throws Error(interrupted) or
// Error(timed_out), naming the workers not done, when the call is stopped. Destroying a Crew
// kills every worker still running. Thread-safety: none.
class Crew {
 public:
  Crew(JobDescriptor& job, std::string job_name, const Plan& plan, const Options& options);
  // Runs the job's current phase (set in the job, with job.staged) on plan.workers workers:
  // starts them for the first phase, wakes them for the next ones, and returns when every
  // slot is done (with job.staged, the workers then wait; else they have exited). A worker
  // started for this phase (the first, or a retry) forked runs fork_body(id). A progress bar
  // over job.m rows of flops_per_row flops each when options.progress and flops_per_row > 0.
  RunStats run(const std::function<int(std::size_t)>& fork_body, double flops_per_row);

 private:
  void reset_slot(std::size_t i, SlotState state);
  void start_worker(std::size_t i, const std::function<int(std::size_t)>& fork_body);

  JobDescriptor& job_;
  const std::string job_name_;
  const Plan& plan_;
  const Options& options_;
  const bool fork_;
  const std::string exe_;
  Launcher launcher_;
  std::vector<unsigned> attempts_;
  bool started_ = false;
};

// One phase on workers started for it and joined: Crew::run on a job that is not staged.
RunStats launch_and_join(JobDescriptor& job, const std::string& job_name, const Plan& plan,
                         const std::function<int(std::size_t)>& fork_body, const Options& options,
                         double flops_per_row);

}  // namespace shmgemm::detail
