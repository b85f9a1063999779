#include "worker/worker_run.hpp"

#include <exception>
#include <new>

#include "common/bus_guard.hpp"
#include "shmgemm/error.hpp"
#include "worker/attach.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/test_fault.hpp"

namespace shmgemm {

void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message,
               std::int32_t code) noexcept {
  WorkerSlot& slot = job.slots[id];
  copy_name(slot.message, message);
  slot.error_code = code;
  slot.state.store(static_cast<std::uint32_t>(SlotState::failed), std::memory_order_release);
}

int run_slot(JobDescriptor& job, std::size_t id, const SlotWork& work, bool inject) noexcept {
  WorkerSlot& slot = job.slots[id];
  // Read before the slot says it is done: the coordinator may set up the next phase at once.
  const bool last_phase = job.staged == 0;
  // A SIGBUS on an operand's file (it shrank mid-run) fails this slot with a message.
  report_bus_errors_to(slot.message, sizeof slot.message, &slot.error_code, &slot.state,
                       static_cast<std::uint32_t>(SlotState::failed));
  try {
    set_blas_threads(static_cast<int>(job.threads_per_worker));
    if (inject)
      inject_test_fault(id, slot.attempt, [&](std::string_view m) { fail_slot(job, id, m); });
    work([&slot](std::uint64_t done) { slot.rows_done.store(done, std::memory_order_release); });
    slot.state.store(static_cast<std::uint32_t>(SlotState::done), std::memory_order_release);
    if (inject) inject_test_fault_after_work(id, slot.attempt, last_phase);
    return 0;
  } catch (...) {
    fail_slot_with_current_exception(job, id);
  }
  return 1;
}

int run_worker(JobDescriptor& job, std::size_t id, const GeneralOperands& ops,
               bool inject) noexcept {
  return run_slot(
      job, id,
      [&](const std::function<void(std::uint64_t)>& done) { run_phase(job, id, ops, done); },
      inject);
}

int run_phases(JobDescriptor& job, std::size_t id, GeneralOperands ops) noexcept {
  AttachedOperands late;  // the prepared B, when it was made after this launch
  for (;;) {
    // Read before the slot says it is done (run_worker): the coordinator may then set up the
    // next phase, and job.staged with it, before this worker looks again.
    const bool more = job.staged != 0;
    const GeneralJob& g = job.general;
    if (g.b_prepared && g.phase != Phase::scan && ops.prepared == nullptr) {
      try {
        ops.prepared = late.map_prepared(job);
      } catch (...) {
        fail_slot_with_current_exception(job, id);
        return 1;
      }
    }
    if (const int status = run_worker(job, id, ops); status != 0 || !more) return status;
    try {
      job.phase_done.post();
      job.slots[id].go.wait();
    } catch (...) {
      fail_slot_with_current_exception(job, id);
      return 1;
    }
  }
}

void fail_slot_with_current_exception(JobDescriptor& job, std::size_t id) noexcept {
  try {
    throw;
  } catch (const Error& e) {
    fail_slot(job, id, e.what(), static_cast<std::int32_t>(e.code()));
  } catch (const std::bad_alloc&) {
    fail_slot(job, id, "out of memory", static_cast<std::int32_t>(ErrorCode::resource));
  } catch (const std::exception& e) {
    fail_slot(job, id, e.what());
  } catch (...) {
    fail_slot(job, id, "unknown exception");
  }
}

}  // namespace shmgemm
