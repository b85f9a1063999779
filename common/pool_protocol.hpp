// What a Pool and its workers share: the control block (a task table and its queue) that lives
// in a shared segment beside the pool's arena. Tasks name operands by offsets into the arena.
#pragma once

#include <boost/interprocess/sync/interprocess_semaphore.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/dtype.hpp"
#include "common/job.hpp"
#include "common/robust_mutex.hpp"

namespace shmgemm {

// A spinning thread's pause between looks (x86's PAUSE: lets the other hyperthread run, saves
// power); nothing elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline constexpr std::uint64_t kPoolMagic = 0x314c4f4f504d4853ULL;  // "SHMPOOL1"
inline constexpr std::uint32_t kPoolVersion = 2;
inline constexpr std::size_t kPoolTasks = 512;
inline constexpr std::size_t kPoolMaxWorkers = 64;

enum class TaskState : std::uint32_t { free = 0, queued = 1, running = 2, done = 3, failed = 4 };

// One worker's part of one phase of a job: slot `slot` of the job descriptor at `job_offset` in
// the arena, whose operands are offsets into the arena too (Storage::arena). The host fills it
// while it is free; a worker takes it off the queue, runs it and marks it done or failed.
struct PoolTask {
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::int32_t> worker{-1};  // the worker running it
  std::uint64_t job_offset = 0;          // bytes into the arena
  std::uint32_t slot = 0;
  char message[256] = {};
  std::int32_t error_code = -1;  // as WorkerSlot::error_code
};

struct PoolControl {
  std::uint64_t magic = kPoolMagic;
  std::uint32_t version = kPoolVersion;
  std::uint32_t control_bytes = sizeof(PoolControl);
  std::int32_t coordinator_pid = 0;
  std::uint32_t workers = 0;
  std::uint32_t threads_per_worker = 1;
  std::atomic<std::uint32_t> stop{0};
  std::uint64_t arena_bytes = 0;
  char arena_name[256] = {};
  // Indices of queued tasks, a ring guarded by queue_mutex.
  RobustMutex queue_mutex;
  std::uint32_t queue[kPoolTasks] = {};
  std::uint32_t head = 0, count = 0;
  boost::interprocess::interprocess_semaphore queued{0};     // posted once per queued task
  boost::interprocess::interprocess_semaphore completed{0};  // posted once per finished task
  boost::interprocess::interprocess_semaphore attached{0};   // posted once per worker started
  PoolTask tasks[kPoolTasks];
};

// Checks a mapped control block before a worker trusts it. nullptr and `problem` when invalid.
PoolControl* validate_pool(std::span<std::byte> bytes, std::string& problem);

// The job a task names, checked: the descriptor and every operand it names inside an arena of
// `arena_bytes` at `arena`. nullptr and `problem` when invalid.
JobDescriptor* task_job(const PoolTask& task, std::byte* arena, std::uint64_t arena_bytes,
                        std::string& problem);

}  // namespace shmgemm
