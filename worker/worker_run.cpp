#include "worker/worker_run.hpp"

#include <exception>

#include "worker/slice_kernel.hpp"

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
    const RowRange rows{slot.row_begin, slot.row_end};
    compute_rows(job.dtype, ops.a, ops.b, ops.c, rows);
    slot.rows_done.store(rows.size(), std::memory_order_release);
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
