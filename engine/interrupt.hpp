// Interrupts (SIGINT, SIGTERM, SIGHUP and the other signals that end a process by default) as
// a count and a file descriptor that poll() can watch, scoped to the call they interrupt.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmgemm::detail {

// What stops one call: the interrupts that arrive while it runs, and its deadline
// (Options::timeout). Each entry point (multiply_npy, matmul) opens one; throw_if_interrupted()
// and the Launcher consult the innermost scope of their thread. A thread without one (a Pool's
// monitor) is never stopped by an interrupt, and an interrupt that stopped one call does not
// stop the next: nothing sticks. A scope opened inside another belongs to its operation: an
// interrupt since the outer one opened stops it too.
class StopScope {
 public:
  // timeout_seconds <= 0: no deadline.
  explicit StopScope(double timeout_seconds = 0) noexcept;
  ~StopScope();
  StopScope(const StopScope&) = delete;
  StopScope& operator=(const StopScope&) = delete;
  // The signal that interrupted this scope, or 0.
  int signal() const noexcept;
  // Milliseconds left before the deadline (>= 0), or -1 without one.
  long long left_ms() const noexcept;
  double timeout_seconds() const noexcept { return timeout_; }

 private:
  std::uint64_t start_;
  double timeout_;
  std::chrono::steady_clock::time_point deadline_;
  StopScope* outer_;
};

// The moment `seconds` from now, for a deadline.
std::chrono::steady_clock::time_point deadline_after(double seconds);

// This thread's innermost StopScope, or nullptr.
const StopScope* current_stop_scope() noexcept;

// An eventfd that becomes readable when an interrupt arrives, or -1 when handle_interrupts()
// was never called. Readable may outlast the interrupt: check throw_if_interrupted() after.
int interrupt_fd();

// Throws Error(interrupted) naming the signal, if one arrived during this thread's innermost
// StopScope, or Error(timed_out) when its deadline has passed. Without a scope, does nothing.
void throw_if_interrupted();

// Whether handle_interrupts() is in force (then long in-process products run in steps, so that
// an interrupt stops them between steps).
bool interrupts_handled() noexcept;

// In a forked worker: the default action for the signals the coordinator handles.
void reset_interrupt_handlers_in_child();

}  // namespace shmgemm::detail
