// Pool: persistent workers, a shared arena and a task queue in shared memory.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/job.hpp"
#include "common/partition.hpp"
#include "common/pool_protocol.hpp"
#include "common/segment.hpp"
#include "engine/engine_memory.hpp"
#include "engine/interrupt.hpp"
#include "engine/launcher.hpp"
#include "engine/plan.hpp"
#include "engine/views.hpp"
#include "engine/worker_path.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/pool_worker.hpp"

namespace bip = boost::interprocess;

namespace shmgemm::detail {
namespace {

constexpr std::size_t kMiB = 1 << 20;
// Products below this many flops go to one worker as one task: splitting them costs more.
constexpr double kSplitFlops = 1e7;

std::size_t default_arena_bytes() {
  struct statvfs st {};
  const std::uint64_t free =
      ::statvfs("/dev/shm", &st) == 0 ? std::uint64_t(st.f_bavail) * st.f_frsize : 0;
  return std::clamp<std::uint64_t>(free / 2, 64 * kMiB, std::uint64_t{64} << 30);
}

// A job: its tasks still out, its first failure, and what to do when it is done.
struct JobRecord {
  std::promise<void> promise;
  unsigned remaining = 0;
  std::string error;
  std::vector<void*> staged;  // arena blocks to free
  bool copy_back = false;     // C was computed in the arena: copy it into `c_to`
  const std::byte* c_from = nullptr;
  MatrixRef c_to;
  std::size_t item = 8;
  // Options::timeout: past this, a worker still on the job's rows is killed (and replaced).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  bool timed_out = false;
};

}  // namespace

class PoolState {
 public:
  explicit PoolState(const Options& options);
  ~PoolState();
  void shutdown() noexcept;
  void* allocate(std::size_t bytes);
  void free(void* p) noexcept;
  std::future<void> submit(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b,
                           const MatrixRef& c);
  PoolStats stats() const {
    const std::lock_guard lock(mutex_);
    PoolStats s = stats_;
    s.arena_used_bytes = arena_->get_size() - arena_->get_free_memory();
    return s;
  }
  unsigned workers() const { return workers_; }

 private:
  void monitor() noexcept;
  void start_worker(unsigned id);
  void collect_finished();
  // Kills the workers still on the rows of jobs past their deadline; their jobs fail.
  void expire_jobs();
  void fail_tasks_of(const WorkerExit& exit);
  void finish_job(JobRecord& job) noexcept;
  bool in_arena(const void* p, std::size_t bytes) const {
    const auto* q = static_cast<const std::byte*>(p);
    return q >= arena_base_ && q + bytes <= arena_base_ + arena_bytes_;
  }

  Options options_;
  unsigned workers_ = 1;
  std::string worker_exe_;
  SharedSegment control_segment_;
  PoolControl* control_ = nullptr;
  std::string arena_path_;  // how spawned workers map it: /proc/<pid>/fd/<fd>
  std::unique_ptr<bip::managed_shared_memory> arena_;
  Fd arena_fd_;
  std::byte* arena_base_ = nullptr;
  std::size_t arena_bytes_ = 0;

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable slot_free_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> in_flight_;
  std::unordered_map<std::uint32_t, std::uint64_t> slot_job_;
  std::unordered_map<std::uint64_t, JobRecord> jobs_;
  std::uint64_t next_job_ = 0;
  PoolStats stats_;

  std::atomic<bool> stopping_{false};
  std::promise<void> started_;
  Launcher launcher_;  // used by the monitor thread only
  std::thread monitor_;
};

PoolState::PoolState(const Options& options) : options_(options) {
  check_options(options, Entry::pool);
  const unsigned cores = available_cores();
  workers_ =
      std::clamp<unsigned>(options.workers ? options.workers : cores, 1, unsigned(kPoolMaxWorkers));
  const unsigned threads =
      options.threads_per_worker ? options.threads_per_worker : std::max(1u, cores / workers_);
  if (options.launch == Launch::spawn) worker_exe_ = worker_executable();

  // The arena: a managed segment, its pages reserved as they are allocated. Its name lives only
  // while its descriptor is opened: workers map it through /proc/<pid>/fd/<fd>.
  arena_bytes_ = options.pool_bytes ? options.pool_bytes : default_arena_bytes();
  const std::string arena_name = make_segment_name("arena");  // only while it is created
  try {
    arena_ = std::make_unique<bip::managed_shared_memory>(
        bip::create_only, arena_name.c_str(), arena_bytes_, nullptr, bip::permissions(0600));
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(arena_name.c_str());
    throw Error(ErrorCode::resource, fmt::format("pool: cannot create a {}-byte arena in "
                                                 "/dev/shm/{}: {}",
                                                 arena_bytes_, arena_name, e.what()));
  }
  arena_fd_.reset(::shm_open(("/" + arena_name).c_str(), O_RDWR | O_CLOEXEC, 0));
  const int open_error = errno;
  bip::shared_memory_object::remove(arena_name.c_str());
  if (!arena_fd_)
    throw Error(ErrorCode::resource, fmt::format("pool: cannot open its arena /dev/shm/{}: {}",
                                                 arena_name, std::strerror(open_error)));
  arena_path_ = arena_fd_.path_for_others();
  arena_base_ = static_cast<std::byte*>(arena_->get_address());

  // The control block (never named: see SharedSegment).
  control_segment_ = SharedSegment::create("pool", sizeof(PoolControl));
  control_ = new (control_segment_.data()) PoolControl{};
  control_->coordinator_pid = ::getpid();
  control_->workers = workers_;
  control_->threads_per_worker = threads;
  control_->arena_bytes = arena_bytes_;
  copy_name(control_->arena_name, arena_path_);
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
  register_engine_memory(arena_base_, arena_bytes_, arena_path_);
}

PoolState::~PoolState() {
  shutdown();
  unregister_engine_memory(arena_base_);
  control_->~PoolControl();
  arena_.reset();
}

void PoolState::start_worker(unsigned id) {
  if (options_.launch == Launch::fork) {
    launcher_.fork_worker(id, [this, id] { return run_pool_worker(*control_, arena_base_, id); });
  } else {
    launcher_.spawn_worker(
        id, worker_exe_, {"--pool", control_segment_.name(), "--id", std::to_string(id)},
        {{"OPENBLAS_NUM_THREADS", std::to_string(control_->threads_per_worker)}});
  }
}

void PoolState::monitor() noexcept {
  try {
    for (unsigned i = 0; i < workers_; ++i)
      start_worker(i);
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
    try {
      for (const WorkerExit& exit : launcher_.wait_exits(0)) {
        if (stopping_.load()) break;
        fail_tasks_of(exit);
        start_worker(static_cast<unsigned>(exit.id));
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
      unfinished.push_back(std::move(job));
    }
    jobs_.clear();
    in_flight_.clear();
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
      copy_name(t.message,
                fmt::format("pool worker {} {} while computing rows {}-{}", exit.id,
                            exit.describe(), t.row_begin, t.row_end ? t.row_end - 1 : 0));
      t.state.store(std::uint32_t(TaskState::failed));
    }
  }
  // It may have taken a wake-up for a task it never took off the queue: one more for others.
  control_->queued.post();
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
        job.error = fmt::format(
            "timed out after {:g} s: pool worker {} was still computing rows {}-{}{}; it was "
            "stopped and replaced",
            options_.timeout, worker, t.row_begin, t.row_end ? t.row_end - 1 : 0, [&] {
              for (const auto& [id, sig] : launcher_.stopped())
                if (id == std::size_t(worker))
                  return fmt::format(" (stopped by SIG{})", sigabbrev_np(sig));
              return std::string();
            }());
      }
      to_kill.push_back(std::size_t(worker));
    }
  }
  for (std::size_t id : to_kill)
    launcher_.kill_one(id);
}

void PoolState::collect_finished() {
  std::vector<JobRecord> finished;
  {
    const std::lock_guard lock(mutex_);
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
        if (state == TaskState::failed && job.error.empty()) job.error = t.message;
        if (--job.remaining == 0) {
          finished.push_back(std::move(job));
          jobs_.erase(it);
        }
      }
      ++stats_.tasks;
      t.state.store(std::uint32_t(TaskState::free));
      slot_job_.erase(slot);
      free_slots_.push_back(slot);
      in_flight_[i] = in_flight_.back();
      in_flight_.pop_back();
    }
    stats_.jobs += finished.size();
    for (const JobRecord& job : finished)
      if (!job.error.empty()) ++stats_.failed_jobs;
  }
  if (!finished.empty()) slot_free_.notify_all();
  for (JobRecord& job : finished)
    finish_job(job);
}

void PoolState::finish_job(JobRecord& job) noexcept {
  if (job.copy_back && job.error.empty()) {
    const MatrixRef& to = job.c_to;
    copy_rows(
        {job.c_from, to.rows, to.cols, std::max<std::uint64_t>(to.cols, 1), Layout::row_major}, to,
        0, to.rows, job.item);
  }
  for (void* p : job.staged)
    free(p);
  if (job.error.empty())
    job.promise.set_value();
  else
    job.promise.set_exception(std::make_exception_ptr(
        Error(job.timed_out                                             ? ErrorCode::timed_out
              : stopping_.load() && job.error.rfind("the pool", 0) == 0 ? ErrorCode::shut_down
                                                                        : ErrorCode::worker_failed,
              job.error)));
}

void PoolState::shutdown() noexcept {
  if (stopping_.exchange(true)) {
    if (monitor_.joinable()) monitor_.join();
    return;
  }
  slot_free_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

void* PoolState::allocate(std::size_t bytes) {
  void* p = nullptr;
  try {
    p = arena_->allocate_aligned(std::max<std::size_t>(bytes, 1), 64);
  } catch (const bip::bad_alloc&) {
    throw Error(ErrorCode::resource,
                fmt::format("pool: its {}-byte arena has no room for {} bytes more (see "
                            "Options::pool_bytes)",
                            arena_bytes_, bytes));
  }
  // Reserve the pages now: a full /dev/shm is an error here, not a SIGBUS in a worker.
  const auto offset = static_cast<off_t>(static_cast<std::byte*>(p) - arena_base_);
  if (arena_fd_) {
    if (const int err = ::posix_fallocate(arena_fd_.get(), offset, static_cast<off_t>(bytes));
        err) {
      arena_->deallocate(p);
      throw Error(ErrorCode::resource, fmt::format("pool: cannot reserve {} bytes in /dev/shm: {}",
                                                   bytes, std::strerror(err)));
    }
  }
  std::memset(p, 0, bytes);
  return p;
}

void PoolState::free(void* p) noexcept {
  if (p) arena_->deallocate(p);
}

std::future<void> PoolState::submit(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b,
                                    const MatrixRef& c) {
  check_product_shapes(a, b, c);
  if (stopping_.load()) throw Error(ErrorCode::shut_down, "the pool is shut down");
  const std::size_t item = item_size(dtype);
  const std::uint64_t m = a.rows, k = a.cols, n = b.cols;
  std::promise<void> ready;
  if (m == 0 || n == 0 || k == 0) {
    for (std::uint64_t i = 0; i < c.rows; ++i)
      for (std::uint64_t j = 0; j < c.cols; ++j)
        std::memset(c.data + (c.layout == Layout::row_major ? i * c.ld + j : j * c.ld + i) * item,
                    0, item);
    ready.set_value();
    return ready.get_future();
  }

  JobRecord job;
  job.item = item;
  std::uint64_t staged = 0;
  try {
    // Operands in the arena are used where they are; others are copied in.
    auto place = [&](const ConstMatrixRef& x) -> std::uint64_t {
      const std::uint64_t bytes =
          matrix_extent_bytes(x.rows, x.cols, x.ld, x.layout, item).value_or(0);
      if (in_arena(x.data, bytes)) return std::uint64_t(x.data - arena_base_);
      void* p = allocate(bytes);
      job.staged.push_back(p);
      std::memcpy(p, x.data, bytes);
      staged += bytes;
      return std::uint64_t(static_cast<std::byte*>(p) - arena_base_);
    };
    if (options_.timeout > 0) job.deadline = deadline_after(options_.timeout);
    PoolTask proto;
    proto.dtype = dtype;
    proto.m = m;
    proto.k = k;
    proto.n = n;
    proto.a_offset = place(a);
    proto.a_ld = a.ld;
    proto.a_layout = a.layout;
    proto.b_offset = place(b);
    proto.b_ld = b.ld;
    proto.b_layout = b.layout;
    const std::uint64_t c_bytes =
        matrix_extent_bytes(c.rows, c.cols, c.ld, c.layout, item).value_or(0);
    if (c.layout == Layout::row_major && in_arena(c.data, c_bytes)) {
      proto.c_offset = std::uint64_t(c.data - arena_base_);
      proto.c_ld = c.ld;
    } else {
      void* p = allocate(m * n * item);
      job.staged.push_back(p);
      job.copy_back = true;
      job.c_from = static_cast<const std::byte*>(p);
      job.c_to = c;
      staged += m * n * item;
      proto.c_offset = std::uint64_t(static_cast<std::byte*>(p) - arena_base_);
      proto.c_ld = n;
    }

    // Blocks of rows, one task each: as many as workers, or one for a small product.
    const double flops = 2.0 * double(m) * double(n) * double(k);
    const RowSplit split =
        plan_row_split(m, flops < kSplitFlops ? 1 : workers_, cache_line_rows(n, item));

    std::future<void> future = job.promise.get_future();
    job.remaining = static_cast<unsigned>(split.workers);
    std::vector<std::uint32_t> slots;
    {
      std::unique_lock lock(mutex_);
      slot_free_.wait(lock,
                      [&] { return stopping_.load() || free_slots_.size() >= split.workers; });
      if (stopping_.load()) throw Error(ErrorCode::shut_down, "the pool is shut down");
      const std::uint64_t id = next_job_++;
      for (std::size_t i = 0; i < split.workers; ++i) {
        const std::uint32_t slot = free_slots_.back();
        free_slots_.pop_back();
        PoolTask& t = control_->tasks[slot];
        const RowRange rows = partition_rows(m, split.workers, i, split.block_factor);
        t.dtype = proto.dtype;
        t.m = m;
        t.k = k;
        t.n = n;
        t.a_offset = proto.a_offset;
        t.b_offset = proto.b_offset;
        t.c_offset = proto.c_offset;
        t.a_ld = proto.a_ld;
        t.b_ld = proto.b_ld;
        t.c_ld = proto.c_ld;
        t.a_layout = proto.a_layout;
        t.b_layout = proto.b_layout;
        t.row_begin = rows.begin;
        t.row_end = rows.end;
        t.message[0] = '\0';
        t.worker.store(-1);
        t.state.store(std::uint32_t(TaskState::queued), std::memory_order_release);
        slot_job_[slot] = id;
        in_flight_.push_back(slot);
        slots.push_back(slot);
      }
      stats_.staged_bytes += staged;
      jobs_.emplace(id, std::move(job));
      const RobustLock queue_lock(control_->queue_mutex);
      for (std::uint32_t slot : slots) {
        control_->queue[(control_->head + control_->count) % kPoolTasks] = slot;
        ++control_->count;
      }
    }
    for (std::size_t i = 0; i < slots.size(); ++i)
      control_->queued.post();
    return future;
  } catch (...) {
    for (void* p : job.staged)
      free(p);
    throw;
  }
}

void* pool_allocate(PoolState& pool, std::size_t bytes) {
  return pool.allocate(bytes);
}
void pool_free(PoolState& pool, void* p) noexcept {
  pool.free(p);
}

}  // namespace shmgemm::detail

namespace shmgemm {

Pool::Pool(const Options& options) : state_(std::make_shared<detail::PoolState>(options)) {}

Pool::~Pool() {
  if (state_) state_->shutdown();
}

std::future<void> Pool::submit(MatrixView<const double> a, MatrixView<const double> b,
                               MatrixView<double> c) {
  return state_->submit(DType::float64, detail::ref_of(a), detail::ref_of(b), detail::ref_of(c));
}

std::future<void> Pool::submit(MatrixView<const float> a, MatrixView<const float> b,
                               MatrixView<float> c) {
  return state_->submit(DType::float32, detail::ref_of(a), detail::ref_of(b), detail::ref_of(c));
}

void Pool::matmul(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c) {
  submit(a, b, c).get();
}

void Pool::matmul(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c) {
  submit(a, b, c).get();
}

unsigned Pool::workers() const {
  return state_->workers();
}
PoolStats Pool::stats() const {
  return state_->stats();
}

}  // namespace shmgemm
