// shmgemm's public API: C = A·B on worker processes that share A, B and C without copying.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "shmgemm/error.hpp"

namespace shmgemm {

// How workers start.
enum class Launch {
  fork,   // children of this process; they inherit its mappings, no exec
  spawn,  // the shmgemm-worker executable, started with Boost.Process; it attaches by name
};

// Where A, B and C live while workers compute.
enum class Backing {
  shm,   // named POSIX shared-memory segments; .npy operands are read into them once
  file,  // the .npy files themselves, mapped; C is the output file's mapped data section
};

struct Options {
  unsigned workers = 0;             // worker processes; 0 means one per available core
  unsigned threads_per_worker = 0;  // OpenBLAS threads in each worker; 0: cores / workers, >= 1
  Launch launch = Launch::fork;
  Backing backing = Backing::file;
  bool in_process = false;  // no workers: one OpenBLAS call in this process (a reference)
  // A failed block is recomputed in a fresh worker up to this many times. With spawn and
  // retries > 0 the segment names stay until the run ends, so a fresh worker can attach.
  unsigned retries = 0;
  // Called on each retry with a one-line explanation ("worker 1 (rows 2000-3999) was killed by
  // signal 9; retrying (1 of 2)"). May be empty.
  std::function<void(const std::string&)> on_retry;
};

// What a run did.
struct Report {
  std::uint64_t m = 0, k = 0, n = 0;
  std::string dtype;
  unsigned workers = 0;  // 0 when the product ran in process or was empty
  unsigned threads_per_worker = 0;
  Launch launch = Launch::fork;
  Backing backing = Backing::file;
  bool in_process = false;
  double seconds = 0;          // the whole call: open, place, compute, write
  double compute_seconds = 0;  // first worker started to last worker joined
  unsigned retries = 0;        // blocks recomputed after a worker failed
  double gflops() const;       // 2mnk / seconds
};

// Computes C = A·B for the 2-D .npy files `a` and `b` (float32 or float64, C or Fortran order)
// and writes `out` as a C-order .npy file. `out` is replaced only by a complete result: it is
// written under a temporary name beside it and renamed at the end. Throws Error naming the file
// or option at fault. Thread-safety: may be called from several threads at once.
Report multiply_npy(const std::filesystem::path& a, const std::filesystem::path& b,
                    const std::filesystem::path& out, const Options& options = {});

// Makes SIGINT, SIGTERM and SIGHUP stop a run in progress instead of killing the process: the
// workers are killed and reaped, segments and temporary files removed, the output left as it
// was, and the call throws Error(ErrorCode::interrupted); interrupted_signal() tells which
// signal. Installs process-wide handlers; call it once, from the main thread, in programs that
// own their signal handling (the shmgemm program does).
void handle_interrupts();
int interrupted_signal();

// CPUs this process may run on (its affinity mask).
unsigned available_cores();

std::string_view to_string(Launch launch);
std::string_view to_string(Backing backing);

}  // namespace shmgemm
