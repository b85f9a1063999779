// For tests only: faults caused on request, so that tests can make a worker crash or stall at a
// known point without racing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace shmgemm {

// SHMGEMM_TEST_FAULT="W:ACTION[:N]" makes worker W (a number, or "all") fail on its first N
// attempts (every attempt without N). ACTION: kill (SIGKILL itself), segv (SIGSEGV), abort
// (SIGABRT), exit (status 7, after `on_exit` records a message), throw (Error(internal), for
// callers that report errors themselves, as MPI ranks do) or stall (sleep until killed).
// Returns only when no fault applies to worker `id` on attempt `attempt`.
void inject_test_fault(std::size_t id, std::uint32_t attempt,
                       const std::function<void(std::string_view)>& on_exit);

}  // namespace shmgemm
