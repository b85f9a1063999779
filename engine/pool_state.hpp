// The state behind a Pool: its arena, its workers (started and replaced by the monitor
// thread), the task queue they share with it, and the jobs in flight. pool.cpp follows the
// workers and the tasks, pool_submit.cpp turns a call into a job, pool_api.cpp is the facade.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/job.hpp"
#include "common/pool_protocol.hpp"
#include "common/segment.hpp"
#include "engine/launcher.hpp"
#include "engine/plan.hpp"
#include "engine/pool_arena.hpp"
#include "engine/product.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// An operand or the job descriptor at `offset` bytes into the arena, as pool workers find it.
OperandRef arena_ref(std::uint64_t offset);

// A job: its phases, its tasks still out, its first failure, and what to do when it is done.
struct JobRecord {
  std::promise<Report> promise;
  Report report;
  Product product;
  Plan plan;
  JobDescriptor* job = nullptr;  // in the arena
  std::unique_ptr<Phases> phases;
  GeneralOperands local;
  unsigned remaining = 0;
  std::string error;
  ErrorCode code = ErrorCode::worker_failed;
  std::vector<void*> blocks;                // arena blocks to free: staging, descriptor, prepared B
  std::optional<MutableArrayView> copy_to;  // C was computed in the arena: copy it here
  std::chrono::steady_clock::time_point start, compute_start;
  // Options::timeout: past this, a worker still on the job's rows is killed (and replaced).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  bool timed_out = false;
  bool started = false;                  // a worker has taken one of its tasks
  std::function<void()> on_done;         // after the promise is kept
  std::shared_ptr<void> stop_callbacks;  // JobControl's, registered while the job is in flight
};

class PoolState {
 public:
  explicit PoolState(const Options& options);
  ~PoolState();
  void shutdown() noexcept;
  // Throws Error(wrong_process) in a process other than the one that made the pool, and
  // Error(shut_down) once it is shut down.
  void check_usable() const;
  // Whether this is the process that made the pool.
  bool owned_here() const;
  bool closed() const { return stopping_.load(); }
  PoolArena& arena() { return arena_; }
  std::future<Report> submit(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                             std::function<void()> on_done = {}, JobControl control = {});
  // Stops job `id` (JobControl): one not started is taken off the queue and fails with
  // Error(cancelled); one running, when `running_too`, has the workers on its tasks killed (by
  // the monitor thread) and fails with Error(interrupted) once they are gone. Thread-safe.
  void stop_job(std::uint64_t id, bool running_too) noexcept;
  PoolStats stats() const {
    const std::lock_guard lock(mutex_);
    PoolStats s = stats_;
    // Spare job descriptors are the pool's, not in use.
    s.arena_used_bytes = arena_.used() - spare_bytes_;
    return s;
  }
  unsigned workers() const { return workers_; }
  // Waits for `f`, a job of this pool: first for a short while (kWaitSpin) by looking at the
  // tasks itself, as the monitor thread does, so that a small job's result reaches a caller
  // that waits for it without two more thread wake-ups; then as any future.
  Report wait(std::future<Report>& f);

 private:
  void monitor() noexcept;
  // Starts worker `id` as `launch` says (Launch::automatic: decided now, in this thread).
  void start_worker(unsigned id, Launch launch);
  void collect_finished();
  // Starts the next phase of a job whose tasks are all done, or ends it. Under mutex_.
  void advance(std::uint64_t id, JobRecord& job, std::vector<JobRecord>& finished);
  // Queues the current phase's tasks, one per slot, when there are free task slots. Under mutex_.
  bool enqueue(std::uint64_t id, JobRecord& job);
  // Kills the workers still on the rows of jobs past their deadline; their jobs fail.
  void expire_jobs();
  void fail_tasks_of(const WorkerExit& exit);
  // Takes a queued task off the ring (a worker claims tasks under its lock). Under mutex_ and
  // the queue's lock.
  void unqueue(std::uint32_t slot);
  void finish_job(JobRecord& job) noexcept;
  JobDescriptor* take_descriptor();
  void return_descriptor(JobDescriptor* job) noexcept;
  const WorkerSlot& slot_of(const PoolTask& t) const {
    return reinterpret_cast<const JobDescriptor*>(arena_.base() + t.job_offset)->slots[t.slot];
  }

  Options options_;
  pid_t owner_ = 0;  // the process that made the pool
  unsigned workers_ = 1;
  unsigned threads_ = 1;
  Launch launch_ = Launch::fork;  // the first workers'
  std::string worker_exe_;
  PoolArena arena_;
  SharedSegment control_segment_;
  PoolControl* control_ = nullptr;

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable slot_free_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> in_flight_;
  std::unordered_map<std::uint32_t, std::uint64_t> slot_job_;
  std::unordered_map<std::uint64_t, JobRecord> jobs_;
  std::vector<std::uint64_t> waiting_;  // jobs whose next phase waits for free task slots
  std::vector<std::size_t> to_kill_;    // workers the monitor kills: on rows of stopped jobs
  // Job descriptors of finished jobs, reused: a new one is 180 KB of fresh arena pages to
  // reserve, fault in and zero (describe_job and each phase set every field a job reads).
  std::vector<JobDescriptor*> spare_descriptors_;
  std::unordered_map<const JobDescriptor*, std::size_t> descriptor_bytes_;  // arena footprints
  std::size_t spare_bytes_ = 0;
  std::uint64_t next_job_ = 0;
  PoolStats stats_;

  std::atomic<bool> stopping_{false};
  std::promise<void> started_;
  Launcher launcher_;  // used by the monitor thread only
  std::thread monitor_;
};

}  // namespace shmgemm::detail
