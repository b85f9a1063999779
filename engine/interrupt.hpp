// Interrupts (SIGINT, SIGTERM, SIGHUP) as a flag and a file descriptor that poll() can watch.
#pragma once

namespace shmgemm::detail {

// An eventfd that becomes readable when an interrupt arrives, or -1 when handle_interrupts()
// was never called.
int interrupt_fd();

// Throws Error(interrupted) naming the signal, if one has arrived.
void throw_if_interrupted();

// In a forked worker: the default action for the signals the coordinator handles.
void reset_interrupt_handlers_in_child();

}  // namespace shmgemm::detail
