#include "worker/worker_run.hpp"

#include <algorithm>
#include <exception>

#include "worker/slice_kernel.hpp"
#include "worker/test_fault.hpp"

namespace shmgemm {

void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message) noexcept {
  WorkerSlot& slot = job.slots[id];
  copy_name(slot.message, message);
  slot.state.store(static_cast<std::uint32_t>(SlotState::failed), std::memory_order_release);
}

int run_worker(JobDescriptor& job, std::size_t id, const BoundOperands& ops) noexcept {
  WorkerSlot& slot = job.slots[id];
  try {
    set_blas_threads(static_cast<int>(job.threads_per_worker));
    inject_test_fault(id, slot.attempt, [&](std::string_view m) { fail_slot(job, id, m); });
    // A chunk of rows per BLAS call, publishing the rows done after each.
    for (std::uint64_t r = slot.row_begin; r < slot.row_end; r += job.chunk_rows) {
      const std::uint64_t end = std::min(slot.row_end, r + job.chunk_rows);
      compute_rows(job.dtype, ops.a, ops.b, ops.c, {r, end});
      slot.rows_done.store(end - slot.row_begin, std::memory_order_release);
    }
    slot.state.store(static_cast<std::uint32_t>(SlotState::done), std::memory_order_release);
    return 0;
  } catch (const std::exception& e) {
    fail_slot(job, id, e.what());
  } catch (...) {
    fail_slot(job, id, "unknown exception");
  }
  return 1;
}

}  // namespace shmgemm
