// shmgemm's one exception type. Part of the public API.
#pragma once

#include <stdexcept>
#include <string>

#include "shmgemm/export.hpp"

namespace shmgemm {

// What kind of failure an Error reports. Stable: host programs may switch on it; new codes are
// appended.
enum class ErrorCode {
  invalid_argument,  // a bad option or parameter (worker count, shape, path)
  bad_file,          // an operand file that is missing, unreadable or not a valid .npy
  shape_mismatch,    // operands whose shapes cannot be multiplied
  unsupported,       // a dtype, byte order or rank shmgemm does not handle
  resource,          // the OS refused: no memory, no space, cannot map, cannot start a process
  worker_failed,     // a worker process failed or died
  interrupted,       // SIGINT, SIGTERM or SIGHUP arrived while handle_interrupts() was in force
  shut_down,         // a Pool was destroyed before the job finished
  timed_out,         // Options::timeout passed before the product was done
  internal,          // a broken invariant: a bug in shmgemm
  wrong_process,     // a Pool used in a process other than the one that made it (a forked child)
  cancelled,         // a Pool job stopped before it started: it never ran
};

// Thrown by every shmgemm call that fails. what() is one line that names the operand
// (file, option or worker) and the problem.
class SHMGEMM_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace shmgemm
