// The test library's fault hook (see worker/test_fault.hpp): SHMGEMM_TEST_FAULT="W:ACTION[:N]"
// makes worker W (a number, or "all") fail on its first N attempts (every attempt without N).
// ACTION: kill, segv, abort, exit, throw, stall, linger (compute, then never exit), or dawdle
// (0.3 s between a phase's work done and what follows it). Linked into
// the test programs, and preloaded (LD_PRELOAD) into the shmgemm programs they start; production
// builds have no such hook.
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/test_fault.hpp"

extern "C" __attribute__((visibility("default"))) int shmgemm_test_fault_hook(
    std::size_t id, std::uint32_t attempt) {
  const char* spec = std::getenv("SHMGEMM_TEST_FAULT");
  if (spec == nullptr) return shmgemm_fault_none;
  const std::string_view s(spec);
  const std::size_t c1 = s.find(':');
  if (c1 == std::string_view::npos) return shmgemm_fault_none;
  std::size_t worker = 0;
  const bool all = s.substr(0, c1) == "all";
  if (!all && (std::from_chars(s.data(), s.data() + c1, worker).ec != std::errc() || worker != id))
    return shmgemm_fault_none;
  const std::string_view rest = s.substr(c1 + 1);
  const std::size_t c2 = rest.find(':');
  const std::string_view action = rest.substr(0, c2);
  if (c2 != std::string_view::npos) {
    std::uint32_t attempts = 0;
    std::from_chars(rest.data() + c2 + 1, rest.data() + rest.size(), attempts);
    if (attempt >= attempts) return shmgemm_fault_none;
  }
  if (action == "kill") return shmgemm_fault_kill;
  if (action == "segv") return shmgemm_fault_segv;
  if (action == "abort") return shmgemm_fault_abort;
  if (action == "exit") return shmgemm_fault_exit;
  if (action == "throw") return shmgemm_fault_throw;
  if (action == "stall") return shmgemm_fault_stall;
  if (action == "linger") return shmgemm_fault_linger;
  if (action == "dawdle") return shmgemm_fault_dawdle;
  return shmgemm_fault_none;
}
