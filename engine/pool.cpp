// Pool: persistent workers over a shared arena; each job's phases go to them as tasks through a
// queue in shared memory, and the monitor thread follows them: it collects finished tasks,
// starts a job's next phase, replaces dead workers and ends jobs past their timeout.
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <chrono>
#include <cstring>
#include <new>
#include <vector>

#include "engine/engine_memory.hpp"
#include "engine/host_blas.hpp"
#include "engine/interrupt.hpp"
#include "engine/job_runner.hpp"
#include "engine/pool_state.hpp"
#include "engine/worker_path.hpp"
#include "worker/pool_worker.hpp"

namespace bip = boost::interprocess;

namespace shmgemm::detail {

OperandRef arena_ref(std::uint64_t offset) {
  OperandRef r;
  r.storage = Storage::arena;
  r.offset = offset;
  copy_name(r.name, "arena");
  return r;
}

PoolState::PoolState(const Options& options)
    : options_(options),
      owner_(::getpid()),
      arena_((check_options(options, Entry::pool), options.pool_bytes)),
      control_segment_(SharedSegment::create("pool", sizeof(PoolControl))) {
  const unsigned cores = available_cores();
  workers_ =
      std::clamp<unsigned>(options.workers ? options.workers : cores, 1, unsigned(kPoolMaxWorkers));
  threads_ =
      options.threads_per_worker ? options.threads_per_worker : std::max(1u, cores / workers_);
  // Decided here, in the thread that makes the pool (the monitor thread starts the workers while
  // this one waits); a replacement's is decided when it starts.
  launch_ = resolve_launch(options.launch);
  if (launch_ == Launch::spawn) worker_exe_ = worker_executable();

  // The control block (never named: see SharedSegment).
  control_ = new (control_segment_.data()) PoolControl{};
  control_->coordinator_pid = ::getpid();
  control_->workers = workers_;
  control_->threads_per_worker = threads_;
  control_->arena_bytes = arena_.bytes();
  copy_name(control_->arena_name, arena_.path_for_workers());
  for (std::uint32_t i = kPoolTasks; i-- > 0;)
    free_slots_.push_back(i);

  // The monitor thread starts the workers, so that they live as long as it does.
  std::future<void> started = started_.get_future();
  monitor_ = std::thread([this] { monitor(); });
  try {
    started.get();
  } catch (...) {
    shutdown();
    throw;  // the members close what they own; nothing is named
  }
  // Only a pool that runs offers its arena to one-shot matmul (spawned workers reach it by
  // its descriptor).
  register_engine_memory(arena_.base(), arena_.bytes(), arena_.path_for_workers());
}

PoolState::~PoolState() {
  shutdown();
  for (JobDescriptor* job : spare_descriptors_)
    job->~JobDescriptor();
  unregister_engine_memory(arena_.base());
  control_->~PoolControl();
}

void PoolState::start_worker(unsigned id, Launch launch) {
  if (launch == Launch::automatic) launch = resolve_launch(launch);
  if (launch == Launch::fork) {
    launcher_.fork_worker(id, [this, id] { return run_pool_worker(*control_, arena_.base(), id); });
  } else {
    if (worker_exe_.empty()) worker_exe_ = worker_executable();
    launcher_.spawn_worker(
        id, worker_exe_, {"--pool", control_segment_.name(), "--id", std::to_string(id)},
        {{"OPENBLAS_NUM_THREADS", std::to_string(control_->threads_per_worker)}});
  }
}

void PoolState::monitor() noexcept {
  // This thread never calls OpenBLAS: the host's may run it meanwhile.
  const OwnThread own;
  try {
    for (unsigned i = 0; i < workers_; ++i)
      start_worker(i, launch_);
    // A pool worker never exits before the pool stops: one that does (even with status 0) did
    // not start.
    if (!launcher_.wait_attached(control_->attached, workers_, [](std::size_t) { return false; }))
      throw Error(ErrorCode::worker_failed, "pool: a worker failed to start");
    started_.set_value();
  } catch (...) {
    launcher_.kill_all();
    started_.set_exception(std::current_exception());
    return;
  }
  while (!stopping_.load()) {
    // Woken by every finished task; every 5 ms at most to look for dead workers.
    const auto deadline =
        boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(5);
    try {
      if (control_->completed.timed_wait(deadline))
        while (control_->completed.try_wait()) {
        }
    } catch (const bip::interprocess_exception&) {
      // EINTR (a signal handler ran on this thread): look at the tasks all the same.
    }
    collect_finished();
    expire_jobs();
    std::vector<std::size_t> kill;
    {
      const std::lock_guard lock(mutex_);
      kill.swap(to_kill_);
    }
    for (std::size_t id : kill)
      launcher_.kill_one(id);
    try {
      // A worker just killed is waited for: its job's caller waits for the job to end.
      const std::vector<WorkerExit> exits = launcher_.wait_exits(kill.empty() ? 0 : 1000);
      for (const WorkerExit& exit : exits)
        fail_tasks_of(exit);
      // Their jobs end first, then the workers are replaced (a fork or a spawn takes a while).
      if (!exits.empty()) collect_finished();
      for (const WorkerExit& exit : exits) {
        if (stopping_.load()) break;
        // With Launch::automatic: spawned where another thread may be in OpenBLAS now.
        start_worker(static_cast<unsigned>(exit.id), options_.launch);
        const std::lock_guard lock(mutex_);
        ++stats_.workers_replaced;
      }
    } catch (...) {
      // A worker that cannot be replaced: the pool goes on with the workers it has. (Interrupts
      // never stop the pool: this thread has no StopScope.)
    }
  }

  // Shut down: ask the workers to stop, wait a little, then kill what is left.
  control_->stop.store(1);
  for (unsigned i = 0; i < workers_; ++i)
    control_->queued.post();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  try {
    while (launcher_.live() > 0 && std::chrono::steady_clock::now() < until)
      launcher_.wait_exits(50);
  } catch (...) {
  }
  launcher_.kill_all();
  collect_finished();
  // Whatever has not finished never will.
  std::vector<JobRecord> unfinished;
  {
    const std::lock_guard lock(mutex_);
    for (auto& [id, job] : jobs_) {
      job.error = "the pool was shut down before this job finished";
      job.code = ErrorCode::shut_down;
      unfinished.push_back(std::move(job));
    }
    jobs_.clear();
    in_flight_.clear();
    waiting_.clear();
  }
  for (JobRecord& job : unfinished)
    finish_job(job);
}

void PoolState::fail_tasks_of(const WorkerExit& exit) {
  const std::lock_guard lock(mutex_);
  for (std::uint32_t slot : in_flight_) {
    PoolTask& t = control_->tasks[slot];
    if (t.state.load() == std::uint32_t(TaskState::running) &&
        t.worker.load() == std::int32_t(exit.id)) {
      copy_name(t.message, fmt::format("{} {}", worker_name("pool worker", exit.id, slot_of(t)),
                                       exit.describe()));
      t.state.store(std::uint32_t(TaskState::failed));
    }
  }
  // It may have taken a wake-up for a task it never took off the queue: one more for others.
  control_->queued.post();
}

void PoolState::unqueue(std::uint32_t slot) {
  std::uint32_t kept = 0;
  for (std::uint32_t i = 0; i < control_->count; ++i) {
    const std::uint32_t entry = control_->queue[(control_->head + i) % kPoolTasks];
    if (entry != slot) control_->queue[(control_->head + kept++) % kPoolTasks] = entry;
  }
  control_->count = kept;
  // Its wake-up: a worker that took it already finds no task, and goes back to waiting.
  static_cast<void>(control_->queued.try_wait());
}

void PoolState::stop_job(std::uint64_t id, bool running_too) noexcept {
  std::vector<JobRecord> finished;
  {
    const std::lock_guard lock(mutex_);
    const auto it = jobs_.find(id);
    if (it == jobs_.end() || !it->second.error.empty()) return;  // done, or failing already
    JobRecord& job = it->second;
    std::vector<std::uint32_t> mine;
    for (std::uint32_t slot : in_flight_)
      if (slot_job_[slot] == id) mine.push_back(slot);
    {
      // A worker claims a task under the queue's lock: under it, the states are final.
      const RobustLock queue_lock(control_->queue_mutex);
      bool running = job.started;
      for (std::uint32_t slot : mine)
        running |= control_->tasks[slot].state.load() != std::uint32_t(TaskState::queued);
      if (running && !running_too) return;
      for (std::uint32_t slot : mine) {
        PoolTask& t = control_->tasks[slot];
        std::uint32_t queued = std::uint32_t(TaskState::queued);
        if (!t.state.compare_exchange_strong(queued, std::uint32_t(TaskState::free))) {
          if (t.worker.load() >= 0) to_kill_.push_back(std::size_t(t.worker.load()));
          continue;
        }
        unqueue(slot);
        --job.remaining;
        slot_job_.erase(slot);
        free_slots_.push_back(slot);
        std::erase(in_flight_, slot);
      }
      job.code = running ? ErrorCode::interrupted : ErrorCode::cancelled;
      job.error = running ? "stopped on request: the workers on its rows were stopped and replaced"
                          : "cancelled before it started";
    }
    std::erase(waiting_, id);
    if (job.remaining == 0) {
      ++stats_.jobs;
      if (job.code != ErrorCode::cancelled) ++stats_.failed_jobs;
      finished.push_back(std::move(job));
      jobs_.erase(it);
    }
  }
  slot_free_.notify_all();
  control_->completed.post();  // the monitor kills the workers on its rows, if any
  for (JobRecord& job : finished)
    finish_job(job);
}

void PoolState::expire_jobs() {
  if (options_.timeout <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::size_t> to_kill;
  {
    const std::lock_guard lock(mutex_);
    for (std::uint32_t slot : in_flight_) {
      const auto it = jobs_.find(slot_job_[slot]);
      if (it == jobs_.end() || !it->second.deadline || now < *it->second.deadline) continue;
      JobRecord& job = it->second;
      PoolTask& t = control_->tasks[slot];
      const std::int32_t worker = t.worker.load();
      if (t.state.load() != std::uint32_t(TaskState::running) || worker < 0) continue;
      if (!job.timed_out) {
        job.timed_out = true;
        job.code = ErrorCode::timed_out;
        const int held = Launcher::stop_signal(launcher_.stopped(), std::size_t(worker));
        job.error =
            fmt::format("{}: {}; it was stopped and replaced", timed_out_after(options_.timeout),
                        worker_progress("pool worker", std::size_t(worker), slot_of(t), held));
      }
      to_kill.push_back(std::size_t(worker));
    }
  }
  for (std::size_t id : to_kill)
    launcher_.kill_one(id);
}

bool PoolState::enqueue(std::uint64_t id, JobRecord& job) {
  const std::size_t tasks = job.job->workers;
  if (free_slots_.size() < tasks) return false;
  for (std::size_t i = 0; i < tasks; ++i) {
    WorkerSlot& s = job.job->slots[i];
    s.message[0] = '\0';
    s.error_code = -1;
    s.rows_done.store(0);
    s.state.store(static_cast<std::uint32_t>(SlotState::pending));
  }
  job.remaining = static_cast<unsigned>(tasks);
  std::vector<std::uint32_t> slots;
  for (std::size_t i = 0; i < tasks; ++i) {
    const std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    PoolTask& t = control_->tasks[slot];
    t.job_offset = arena_.offset_of(job.job);
    t.slot = static_cast<std::uint32_t>(i);
    t.message[0] = '\0';
    t.error_code = -1;
    t.worker.store(-1);
    t.state.store(std::uint32_t(TaskState::queued), std::memory_order_release);
    slot_job_[slot] = id;
    in_flight_.push_back(slot);
    slots.push_back(slot);
  }
  {
    const RobustLock queue_lock(control_->queue_mutex);
    for (std::uint32_t slot : slots) {
      control_->queue[(control_->head + control_->count) % kPoolTasks] = slot;
      ++control_->count;
    }
  }
  for (std::size_t i = 0; i < slots.size(); ++i)
    control_->queued.post();
  return true;
}

void PoolState::advance(std::uint64_t id, JobRecord& job, std::vector<JobRecord>& finished) {
  std::optional<Phase> phase;
  if (job.error.empty()) {
    try {
      phase = job.phases->next(
          [&](std::uint64_t bytes, std::uint64_t elements) {
            void* p = arena_.allocate(bytes);
            job.blocks.push_back(p);
            job.job->prepared = arena_ref(arena_.offset_of(p));
            job.job->prepared.rows = elements;
            job.job->prepared.cols = 1;
            job.job->prepared.ld = 1;
            return static_cast<std::byte*>(p);
          },
          job.report, job.local);
    } catch (const Error& e) {
      job.error = e.what();
      job.code = e.code();
    }
  }
  if (phase) {
    if (!enqueue(id, job)) waiting_.push_back(id);
    return;
  }
  finished.push_back(std::move(job));
  jobs_.erase(id);
}

void PoolState::collect_finished() {
  std::vector<JobRecord> finished;
  {
    const std::lock_guard lock(mutex_);
    std::vector<std::uint64_t> phase_done;
    for (std::size_t i = 0; i < in_flight_.size();) {
      const std::uint32_t slot = in_flight_[i];
      PoolTask& t = control_->tasks[slot];
      const auto state = TaskState(t.state.load(std::memory_order_acquire));
      if (state != TaskState::done && state != TaskState::failed) {
        ++i;
        continue;
      }
      const auto it = jobs_.find(slot_job_[slot]);
      if (it != jobs_.end()) {
        JobRecord& job = it->second;
        job.started = true;
        if (state == TaskState::failed && job.error.empty()) {
          job.error = t.message;
          job.code = detail::reported_code(t.error_code);
        }
        if (--job.remaining == 0) phase_done.push_back(it->first);
      }
      ++stats_.tasks;
      t.state.store(std::uint32_t(TaskState::free));
      slot_job_.erase(slot);
      free_slots_.push_back(slot);
      in_flight_[i] = in_flight_.back();
      in_flight_.pop_back();
    }
    // Jobs whose next phase waited for task slots first, then those whose phase just ended.
    const std::vector<std::uint64_t> waiting = std::exchange(waiting_, {});
    for (std::uint64_t id : waiting)
      if (const auto it = jobs_.find(id); it != jobs_.end() && !enqueue(id, it->second))
        waiting_.push_back(id);
    for (std::uint64_t id : phase_done)
      if (const auto it = jobs_.find(id); it != jobs_.end()) advance(id, it->second, finished);
    stats_.jobs += finished.size();
    for (const JobRecord& job : finished)
      if (!job.error.empty() && job.code != ErrorCode::cancelled) ++stats_.failed_jobs;
  }
  slot_free_.notify_all();
  for (JobRecord& job : finished)
    finish_job(job);
}

Report PoolState::wait(std::future<Report>& f) {
  constexpr auto kWaitSpin = std::chrono::microseconds(200);
  const auto until = std::chrono::steady_clock::now() + kWaitSpin;
  while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < until) {
    collect_finished();
    cpu_relax();
  }
  return f.get();
}

void PoolState::finish_job(JobRecord& job) noexcept {
  if (job.copy_to && job.error.empty()) scatter_from(job.product.c.local, *job.copy_to);
  if (job.job) return_descriptor(job.job);
  for (void* p : job.blocks)
    arena_.free(p);
  if (!job.error.empty()) {
    job.promise.set_exception(std::make_exception_ptr(Error(job.code, job.error)));
  } else {
    const auto now = std::chrono::steady_clock::now();
    job.report.seconds = std::chrono::duration<double>(now - job.start).count();
    job.report.compute_seconds = std::chrono::duration<double>(now - job.compute_start).count();
    job.promise.set_value(std::move(job.report));
  }
  if (job.on_done) {
    try {
      job.on_done();
    } catch (...) {
      // A host's callback must not take the pool down.
    }
  }
}

bool PoolState::owned_here() const {
  return ::getpid() == owner_;
}

void PoolState::check_usable() const {
  if (!owned_here())
    throw Error(ErrorCode::wrong_process,
                fmt::format("this Pool belongs to process {}; a pool cannot be used in a child "
                            "made by fork() (make a new one there)",
                            owner_));
  if (stopping_.load()) throw Error(ErrorCode::shut_down, "the pool is closed");
}

void PoolState::shutdown() noexcept {
  if (stopping_.exchange(true)) {
    if (monitor_.joinable()) monitor_.join();
    return;
  }
  slot_free_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

}  // namespace shmgemm::detail
