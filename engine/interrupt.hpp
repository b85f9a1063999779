// Interrupts (SIGINT, SIGTERM, SIGHUP and the other signals that end a process by default) as
// a count and a file descriptor that poll() can watch, scoped to the call they interrupt.
#pragma once

#include <cstdint>

namespace shmgemm::detail {

// The interrupts that concern one call: those that arrive while it runs. Each entry point
// (multiply_npy, matmul) opens one; throw_if_interrupted() and the Launcher consult the
// innermost scope of their thread. A thread without one (a Pool's monitor) is never stopped by
// an interrupt, and an interrupt that stopped one call does not stop the next: nothing sticks.
class StopScope {
 public:
  StopScope() noexcept;
  ~StopScope();
  StopScope(const StopScope&) = delete;
  StopScope& operator=(const StopScope&) = delete;
  // The signal that interrupted this scope, or 0.
  int signal() const noexcept;

 private:
  std::uint64_t start_;
  StopScope* outer_;
};

// An eventfd that becomes readable when an interrupt arrives, or -1 when handle_interrupts()
// was never called. Readable may outlast the interrupt: check throw_if_interrupted() after.
int interrupt_fd();

// Throws Error(interrupted) naming the signal, if one arrived during this thread's innermost
// StopScope. Without a scope, does nothing.
void throw_if_interrupted();

// In a forked worker: the default action for the signals the coordinator handles.
void reset_interrupt_handlers_in_child();

}  // namespace shmgemm::detail
