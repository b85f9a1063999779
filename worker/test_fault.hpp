// A seam for tests: faults caused on request, so that tests can make a worker crash or stall at
// a known point without racing it. Production builds define no hook, and nothing here reads
// the environment: the hook is a weak symbol that only the test library
// tests/test_fault_hook.cpp (libshmgemm_test_faults.so, linked into the tests or preloaded into
// the programs they run) defines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

// What a worker does when the hook says so.
enum ShmgemmTestFault : int {
  shmgemm_fault_none = 0,
  shmgemm_fault_kill = 1,    // SIGKILL itself
  shmgemm_fault_segv = 2,    // SIGSEGV
  shmgemm_fault_abort = 3,   // SIGABRT
  shmgemm_fault_exit = 4,    // status 7, after on_exit records a message
  shmgemm_fault_throw = 5,   // Error(internal), for callers that report errors themselves
  shmgemm_fault_stall = 6,   // sleep until killed
  shmgemm_fault_linger = 7,  // compute, say so, then sleep until killed (never exit)
  shmgemm_fault_dawdle = 8,  // after each phase's work, and its slot says done: sleep 0.3 s
};

// The hook: the fault for worker (or rank) `id` on attempt `attempt`. Undefined in production.
extern "C" __attribute__((weak, visibility("default"))) int shmgemm_test_fault_hook(
    std::size_t id, std::uint32_t attempt);

namespace shmgemm {

// Returns at once unless a test's hook asks worker `id` to fail on attempt `attempt`.
void inject_test_fault(std::size_t id, std::uint32_t attempt,
                       const std::function<void(std::string_view)>& on_exit);
// After a phase's work, its slot done: returns at once unless the hook asks worker `id` to
// dawdle (then 0.3 s later), or, after its last phase (`last_phase`), to linger.
void inject_test_fault_after_work(std::size_t id, std::uint32_t attempt, bool last_phase);

}  // namespace shmgemm
