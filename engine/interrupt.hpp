// Interrupts (SIGINT, SIGTERM, SIGHUP and the other signals that end a process by default) as
// a count and a file descriptor that poll() can watch, scoped to the call they interrupt.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>

#include "common/fd.hpp"

namespace shmgemm::detail {

// What stops one call: the interrupts that arrive while it runs, a stop requested on its token
// (Options::stop), and its deadline (Options::timeout). Each entry point (multiply_npy, matmul)
// opens one; throw_if_interrupted() and the Launcher consult the innermost scope of their
// thread. A thread without one (a Pool's monitor) is never stopped by an interrupt, and an
// interrupt that stopped one call does not stop the next: nothing sticks. A scope opened inside
// another belongs to its operation: what stops the outer one stops it too.
class StopScope {
 public:
  // timeout_seconds <= 0 or infinite: no deadline.
  explicit StopScope(double timeout_seconds = 0, std::stop_token stop = {});
  ~StopScope();
  StopScope(const StopScope&) = delete;
  StopScope& operator=(const StopScope&) = delete;
  // The signal that interrupted this scope, or 0.
  int signal() const noexcept;
  // Whether a stop was requested on this scope's token (or an outer scope's).
  bool stop_requested() const noexcept;
  // Whether a token or a deadline may stop this scope (or an outer one).
  bool stoppable() const noexcept;
  // An eventfd that becomes readable when a stop is requested on the token, or -1 without one.
  int stop_fd() const noexcept { return wake_.get(); }
  // Milliseconds left before the deadline (>= 0), or -1 without one.
  long long left_ms() const noexcept;
  double timeout_seconds() const noexcept { return timeout_; }

 private:
  // Wakes the poll() of a launcher that waits on this call's workers.
  struct Wake {
    int fd;
    void operator()() const noexcept;
  };
  std::uint64_t start_;
  double timeout_;
  std::chrono::steady_clock::time_point deadline_;
  std::stop_token stop_;
  Fd wake_;
  std::optional<std::stop_callback<Wake>> on_stop_;
  StopScope* outer_;
};

// The moment `seconds` from now, for a deadline.
std::chrono::steady_clock::time_point deadline_after(double seconds);

// "timed out after 0.5 s": how every failure past a deadline begins.
std::string timed_out_after(double seconds);

// This thread's innermost StopScope, or nullptr.
const StopScope* current_stop_scope() noexcept;

// An eventfd that becomes readable when an interrupt arrives, or -1 when handle_interrupts()
// was never called. Readable may outlast the interrupt: check throw_if_interrupted() after.
int interrupt_fd();

// Throws Error(interrupted) naming the signal, if one arrived during this thread's innermost
// StopScope (or a stop was requested on its token), or Error(timed_out) when its deadline has
// passed (unless `deadline` is false: after the work is done, a deadline no longer matters).
// Without a scope, does nothing.
void throw_if_interrupted(bool deadline = true);

// Whether something may stop this thread's call between steps: handle_interrupts() in force, a
// stop token or a deadline in its StopScope (then long in-process products run in steps).
bool call_is_stoppable() noexcept;

// In a forked worker: the default action for the signals the coordinator handles.
void reset_interrupt_handlers_in_child();

}  // namespace shmgemm::detail
