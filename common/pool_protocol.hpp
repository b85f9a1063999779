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
#include "common/matrix.hpp"
#include "common/robust_mutex.hpp"

namespace shmgemm {

inline constexpr std::uint64_t kPoolMagic = 0x314c4f4f504d4853ULL;  // "SHMPOOL1"
inline constexpr std::uint32_t kPoolVersion = 1;
inline constexpr std::size_t kPoolTasks = 512;
inline constexpr std::size_t kPoolMaxWorkers = 64;

enum class TaskState : std::uint32_t { free = 0, queued = 1, running = 2, done = 3, failed = 4 };

// One block of rows of one product. The host fills it while it is free; a worker takes it off
// the queue, runs it and marks it done or failed.
struct PoolTask {
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::int32_t> worker{-1};  // the worker running it
  DType dtype = DType::float64;
  std::uint64_t m = 0, k = 0, n = 0;
  std::uint64_t a_offset = 0, b_offset = 0, c_offset = 0;  // bytes into the arena
  std::uint64_t a_ld = 0, b_ld = 0, c_ld = 0;
  Layout a_layout = Layout::row_major, b_layout = Layout::row_major;  // C is row-major
  std::uint64_t row_begin = 0, row_end = 0;
  char message[256] = {};
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

// Checks that a task's operands lie inside an arena of `arena_bytes`. Empty when they do.
std::string check_task(const PoolTask& task, std::uint64_t arena_bytes);

}  // namespace shmgemm
