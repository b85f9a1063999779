// shmgemm's one exception type. Part of the public API.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

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
  // A failure the system reported on a file: also its error number (errno) and the file's name
  // as given, so that a host reports it as it reports the system's errors (Python raises
  // FileNotFoundError, PermissionError, ... with errno and filename set).
  Error(ErrorCode code, const std::string& message, int error_number, std::string path)
      : std::runtime_error(message),
        code_(code),
        error_number_(error_number),
        path_(std::move(path)) {}
  // A bad option or argument: `message` names it first, and option() names it alone
  // ("Options::workers", "--shape"), so that a face tells a caller's mistake from a failure by
  // the error, not by its text.
  static Error bad_option(std::string option, const std::string& message,
                          ErrorCode code = ErrorCode::invalid_argument) {
    Error e(code, message);
    e.option_ = std::move(option);
    return e;
  }
  ErrorCode code() const noexcept { return code_; }
  // The option or argument a bad_option names; else empty.
  const std::string& option() const noexcept { return option_; }
  // errno, or 0 for a failure that is not the system's.
  int error_number() const noexcept { return error_number_; }
  // The file the failure concerns, when error_number() is set; else empty.
  const std::string& path() const noexcept { return path_; }

 private:
  ErrorCode code_;
  int error_number_ = 0;
  std::string path_;
  std::string option_;
};

}  // namespace shmgemm
