#include "worker/worker_run.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "worker/slice_kernel.hpp"

namespace shmgemm {
namespace {

// For tests only: SHMGEMM_TEST_FAULT="W:ACTION[:N]" makes worker W (a number, or "all") fail on
// its first N attempts (on every attempt without N), just before it computes. ACTION is kill
// (SIGKILL itself), segv (SIGSEGV), abort (SIGABRT), exit (status 7 with a message in its slot) or
// stall (sleep until killed). Lets tests cause each fault for real without racing a running
// product.
void maybe_inject_fault(JobDescriptor& job, std::size_t id) {
  const char* spec = std::getenv("SHMGEMM_TEST_FAULT");
  if (spec == nullptr) return;
  const std::string_view s(spec);
  const std::size_t c1 = s.find(':');
  if (c1 == std::string_view::npos) return;
  std::size_t worker = 0;
  const bool all = s.substr(0, c1) == "all";
  if (!all && (std::from_chars(s.data(), s.data() + c1, worker).ec != std::errc() || worker != id))
    return;
  const std::string_view rest = s.substr(c1 + 1);
  const std::size_t c2 = rest.find(':');
  const std::string_view action = rest.substr(0, c2);
  if (c2 != std::string_view::npos) {
    std::uint32_t attempts = 0;
    std::from_chars(rest.data() + c2 + 1, rest.data() + rest.size(), attempts);
    if (job.slots[id].attempt >= attempts) return;
  }
  if (action == "kill") ::raise(SIGKILL);
  if (action == "segv") ::raise(SIGSEGV);
  if (action == "abort") std::abort();
  if (action == "exit") {
    fail_slot(job, id, "injected fault (SHMGEMM_TEST_FAULT)");
    ::_exit(7);
  }
  if (action == "stall")
    for (;;)
      ::pause();
}

}  // namespace

void fail_slot(JobDescriptor& job, std::size_t id, std::string_view message) noexcept {
  WorkerSlot& slot = job.slots[id];
  copy_name(slot.message, message);
  slot.state.store(static_cast<std::uint32_t>(SlotState::failed), std::memory_order_release);
}

int run_worker(JobDescriptor& job, std::size_t id, const BoundOperands& ops) noexcept {
  WorkerSlot& slot = job.slots[id];
  try {
    set_blas_threads(static_cast<int>(job.threads_per_worker));
    maybe_inject_fault(job, id);
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
