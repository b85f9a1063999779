#include "worker/pool_worker.hpp"

#include "shmgemm/error.hpp"

#include <algorithm>
#include <chrono>
#include <exception>

#include "common/job.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/test_fault.hpp"
#include "worker/worker_run.hpp"

namespace shmgemm {
namespace {

// Takes the next task off the queue and claims it; nullptr when the entry was stale.
PoolTask* take_task(PoolControl& control, unsigned id) {
  const RobustLock lock(control.queue_mutex);
  // The ring as another process left it: a worker that died mid-update (recovered()), or a
  // corrupted block, must not send this one outside it.
  if (lock.recovered() || control.head >= kPoolTasks || control.count > kPoolTasks) {
    control.head %= kPoolTasks;
    control.count = std::min<std::uint32_t>(control.count, kPoolTasks);
  }
  if (control.count == 0) return nullptr;
  PoolTask& task = control.tasks[control.queue[control.head] % kPoolTasks];
  // Claim it before it leaves the queue: should this worker die from here on, the task is
  // marked as its own and the pool fails it.
  task.worker.store(static_cast<std::int32_t>(id));
  std::uint32_t queued = static_cast<std::uint32_t>(TaskState::queued);
  const bool claimed =
      task.state.compare_exchange_strong(queued, static_cast<std::uint32_t>(TaskState::running));
  control.head = (control.head + 1) % kPoolTasks;
  --control.count;
  return claimed ? &task : nullptr;
}

void run_task(PoolTask& task, unsigned id, std::byte* arena, std::uint64_t arena_bytes) {
  std::string problem;
  JobDescriptor* job = task_job(task, arena, arena_bytes, problem);
  if (!job) {
    copy_name(task.message, problem);
    task.state.store(static_cast<std::uint32_t>(TaskState::failed));
    return;
  }
  try {
    inject_test_fault(id, 0, [](std::string_view) {});
  } catch (const Error& e) {
    copy_name(task.message, e.what());
    task.error_code = static_cast<std::int32_t>(e.code());
    task.state.store(static_cast<std::uint32_t>(TaskState::failed), std::memory_order_release);
    return;
  }
  const GeneralOperands ops{arena + job->a.offset, arena + job->b.offset, arena + job->c.offset,
                            job->general.b_prepared ? arena + job->prepared.offset : nullptr};
  if (run_worker(*job, task.slot, ops, false) != 0) {
    copy_name(task.message, job->slots[task.slot].message);
    task.error_code = job->slots[task.slot].error_code;
    task.state.store(static_cast<std::uint32_t>(TaskState::failed), std::memory_order_release);
    return;
  }
  task.state.store(static_cast<std::uint32_t>(TaskState::done), std::memory_order_release);
}

}  // namespace

int run_pool_worker(PoolControl& control, std::byte* arena, unsigned id) noexcept {
  try {
    set_blas_threads(static_cast<int>(control.threads_per_worker));
    control.attached.post();
    for (;;) {
      // A short spin first (kTaskSpin): a host that submits small jobs one after another
      // finds this worker awake, not asleep in the kernel.
      constexpr auto kTaskSpin = std::chrono::microseconds(200);
      const auto until = std::chrono::steady_clock::now() + kTaskSpin;
      bool taken = false;
      while (!(taken = control.queued.try_wait()) && std::chrono::steady_clock::now() < until)
        cpu_relax();
      if (!taken) control.queued.wait();
      if (control.stop.load()) return 0;
      PoolTask* task = take_task(control, id);
      if (task == nullptr) continue;
      run_task(*task, id, arena, control.arena_bytes);
      control.completed.post();
    }
  } catch (const std::exception&) {
    return 1;
  }
}

}  // namespace shmgemm
