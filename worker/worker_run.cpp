#include "worker/worker_run.hpp"

#include <sys/mman.h>
#include <algorithm>

#include <cstring>
#include <exception>
#include <vector>

#include "common/bus_guard.hpp"
#include "common/mapped_file.hpp"
#include "worker/slice_kernel.hpp"
#include "worker/test_fault.hpp"

namespace shmgemm {
namespace {

// Copies B, and rows `rows` of A (row-major), into private buffers, and returns the operands of
// the block those rows make: A's rows as a rows x k matrix, C from its first row.
BoundOperands copy_inputs(DType dtype, const BoundOperands& ops, RowRange rows,
                          std::vector<std::byte>& own_a, std::vector<std::byte>& own_b) {
  const std::size_t item = item_size(dtype);
  const ConstMatrixRef& a = ops.a;
  const ConstMatrixRef& b = ops.b;
  own_b.assign(b.data,
               b.data + matrix_extent_bytes(b.rows, b.cols, b.ld, b.layout, item).value_or(0));
  own_a.resize(rows.size() * a.cols * item);
  for (std::uint64_t i = 0; i < rows.size(); ++i)
    for (std::uint64_t j = 0; j < a.cols; ++j) {
      const std::uint64_t at =
          a.layout == Layout::row_major ? (rows.begin + i) * a.ld + j : j * a.ld + rows.begin + i;
      std::memcpy(own_a.data() + (i * a.cols + j) * item, a.data + at * item, item);
    }
  BoundOperands block = ops;
  block.a = {own_a.data(), rows.size(), a.cols, std::max<std::uint64_t>(a.cols, 1),
             Layout::row_major};
  block.b.data = own_b.data();
  block.c.data = ops.c.data + rows.begin * ops.c.ld * item;
  block.c.rows = rows.size();
  return block;
}

}  // namespace

void release_rows(DType dtype, const BoundOperands& ops, RowRange rows) noexcept {
  const std::size_t item = item_size(dtype);
  if (ops.a.layout == Layout::row_major)
    advise_pages(ops.a.data + rows.begin * ops.a.ld * item, rows.size() * ops.a.ld * item,
                 MADV_DONTNEED);
  advise_pages(ops.c.data + rows.begin * ops.c.ld * item, rows.size() * ops.c.ld * item,
               MADV_DONTNEED);
}

void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message) noexcept {
  WorkerSlot& slot = job.slots[id];
  copy_name(slot.message, message);
  slot.state.store(static_cast<std::uint32_t>(SlotState::failed), std::memory_order_release);
}

int run_worker(JobDescriptor& job, std::size_t id, const BoundOperands& ops, bool inject) noexcept {
  WorkerSlot& slot = job.slots[id];
  // A SIGBUS on an operand's file (it shrank mid-run) fails this slot with a message.
  report_bus_errors_to(slot.message, sizeof slot.message, &slot.state,
                       static_cast<std::uint32_t>(SlotState::failed));
  try {
    set_blas_threads(static_cast<int>(job.threads_per_worker));
    if (inject)
      inject_test_fault(id, slot.attempt, [&](std::string_view m) { fail_slot(job, id, m); });
    if (job.kind == JobKind::general) {
      run_phase(job, id, ops.general, [&slot](std::uint64_t done) {
        slot.rows_done.store(done, std::memory_order_release);
      });
      slot.state.store(static_cast<std::uint32_t>(SlotState::done), std::memory_order_release);
      if (inject) inject_test_fault_after_work(id, slot.attempt);
      return 0;
    }
    // For footprint experiments: private copies of B and of this worker's rows of A.
    std::vector<std::byte> own_a, own_b;
    BoundOperands use = ops;
    std::uint64_t first = 0;  // the row of A and C that is row 0 of `use`
    if (job.copy_inputs) {
      use = copy_inputs(job.dtype, ops, {slot.row_begin, slot.row_end}, own_a, own_b);
      first = slot.row_begin;
    }
    // A chunk of rows per BLAS call, publishing the rows done after each.
    for (std::uint64_t r = slot.row_begin; r < slot.row_end; r += job.chunk_rows) {
      const std::uint64_t end = std::min(slot.row_end, r + job.chunk_rows);
      compute_rows(job.dtype, use.a, use.b, use.c, {r - first, end - first});
      if (job.stream) release_rows(job.dtype, use, {r - first, end - first});
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
