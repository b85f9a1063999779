// shmgemm's public API: C = A·B on worker processes that share A, B and C without copying.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shmgemm/error.hpp"
#include "shmgemm/matrix_view.hpp"
#include "shmgemm/pool.hpp"

namespace shmgemm {

// How workers start.
enum class Launch {
  fork,   // children of this process; they inherit its mappings, no exec
  spawn,  // the shmgemm-worker executable, started with Boost.Process; it maps /proc/<pid>/fd/N
};

// Where A, B and C live while workers compute.
enum class Backing {
  shm,   // named POSIX shared-memory segments; .npy operands are read into them once
  file,  // the .npy files themselves, mapped; C is the output file's mapped data section
};

struct Options {
  unsigned workers = 0;             // worker processes; 0: the automatic plan (see Plan)
  unsigned threads_per_worker = 0;  // OpenBLAS threads in each worker; 0: cores / workers, >= 1
  Launch launch = Launch::fork;
  Backing backing = Backing::file;
  bool in_process = false;  // no workers: one OpenBLAS call in this process
  // Each worker works on its own private copy of B and of its rows of A, as joblib does
  // without memmapping: for footprint experiments (`--inputs copy`), never faster.
  bool copy_inputs = false;
  // Larger than memory: compute this many rows of C at a time and release the pages of A and C
  // that are done (file backing). 0: only when A, B and C do not fit in the memory available
  // (MemAvailable, or the memory cgroup's limit), then 512 rows.
  std::uint64_t rows_per_step = 0;
  bool progress = false;  // draw a progress bar on stderr for runs longer than a second
  // A failed block is recomputed in a fresh worker up to this many times.
  unsigned retries = 0;
  // Pool: bytes of its shared arena; 0: half of /dev/shm's free space. Pages are reserved as
  // they are allocated, so a large arena costs nothing until used.
  std::size_t pool_bytes = 0;
  // multiply_npy: write the output to disk (fdatasync) before renaming it into place, and the
  // folder after (fsync), so that after a power loss the output is the old file or the whole
  // new one, never a valid-looking file of zeros. Costs the time the disk takes to write C.
  bool fsync = false;
  // Give up after this many seconds: the workers are killed, the output left as it was, and the
  // call throws Error(timed_out) naming the workers that had not finished and how far each got
  // (and which were stopped by a signal). 0: no limit. In process, checked between steps of
  // rows. A Pool: per job; a worker still on a timed-out job's rows is killed and replaced.
  double timeout = 0;
  // Called once for each worker found stopped by a signal (SIGSTOP, a debugger) while a run
  // waits for it: "worker 1 (rows 150-299) is stopped by SIGSTOP; waiting for it". May be empty.
  std::function<void(const std::string&)> on_stall;
  // Called on each retry with a one-line explanation ("worker 1 (rows 2000-3999) was killed by
  // signal 9; retrying (1 of 2)"). May be empty.
  std::function<void(const std::string&)> on_retry;
};

// Machine figures behind the automatic plan. `shmgemm calibrate` measures them and caches them
// (calibration_path()); without a cache, built-in defaults for a current x86-64 core apply.
struct Calibration {
  double gflops_f64 = 40;            // dgemm, one thread, large square
  double gflops_f32 = 80;            // sgemm, one thread, large square
  double thread_scaling = 0.9;       // all cores in one process / (cores x one thread), 1024^3
  double thread_scaling_512 = 0.85;  // the same at 512^3
  double half_rate_dim = 48;         // smallest dimension at which one thread runs at half rate
  // Skinny products, one dimension long (131072) and the other two 64: [0] k long, [1] m long, [2]
  // n long. One-thread rate relative to gflops_*, and the thread scaling in one process.
  double skinny_rate[3] = {0.4, 0.3, 0.3};
  double skinny_scaling[3] = {0.6, 0.6, 0.6};
  double process_scaling = 0.9;     // cores one-thread processes at once / (cores x one thread)
  double fork_base_us = 300;        // fork and join workers on an empty block: base cost ...
  double fork_per_worker_us = 100;  // ... plus this per worker
  double spawn_base_us = 1500;      // the same, starting shmgemm-worker executables
  double spawn_per_worker_us = 1500;
  double fault_us_per_mib = 60;  // mapping one MiB of shared pages into one more process
  double copy_gbs = 6;           // memcpy bandwidth, for the shm backing's copies
  unsigned cores = 0;            // the cores when measured; 0 for the defaults
  std::string source = "built-in defaults";
};

// One plan the automatic choice considered.
struct PlanCandidate {
  unsigned workers = 0;  // 0: in process
  unsigned threads = 0;
  double predicted_seconds = 0;
};

// What a run did.
struct Report {
  std::uint64_t m = 0, k = 0, n = 0;  // one product: (m x k) @ (k x n)
  std::uint64_t batch = 1;            // products (stacked operands)
  std::string dtype;                  // the result's, numpy's name
  unsigned workers = 0;               // 0 when the product ran in process or was empty
  unsigned threads_per_worker = 0;
  Launch launch = Launch::fork;
  Backing backing = Backing::file;
  bool in_process = false;
  double seconds = 0;                     // the whole call: open, place, compute, write
  double compute_seconds = 0;             // first worker started to last worker joined
  unsigned retries = 0;                   // blocks recomputed after a worker failed
  std::uint64_t copied_bytes = 0;         // copied to place operands and to bring C back
  std::uint64_t rows_per_step = 0;        // when streaming: rows of C per step; 0: not
  std::uint64_t prepared_bytes = 0;       // B converted once (dtype or integer limbs), shared
  unsigned limb_products = 0;             // integers: dgemm calls per product; 0: not integers
  bool automatic = false;                 // the plan was chosen by the cost model
  std::vector<PlanCandidate> candidates;  // what the automatic plan weighed
  std::string plan_reason;                // why this plan, in one line
  std::string calibration;                // where the figures came from
  double gflops() const;                  // 2 batch mnk / seconds
};

// Computes C = A·B for the 2-D .npy files `a` and `b` (float32 or float64, C or Fortran order)
// and writes `out` as a C-order .npy file. `out` is replaced only by a complete result: it is
// written under a temporary name beside it and renamed at the end. Throws Error naming the file
// or option at fault. Thread-safety: may be called from several threads at once.
Report multiply_npy(const std::filesystem::path& a, const std::filesystem::path& b,
                    const std::filesystem::path& out, const Options& options = {});

// Computes c = a·b for matrices in the host program's memory and blocks until done. The plan
// and launch follow `options` as for multiply_npy (workers = 0: the automatic plan).
// - fork: the workers inherit a and b copy-on-write: no copy. spawn: a and b are copied once into
//   shared segments (unless they lie in a Pool's shared memory), since a new process cannot see
//   this one's memory.
// - With workers, the result is written into shared memory and copied once into c, unless c
//   lies in a Pool's shared memory and is row-major, where workers write it in place. The copy
//   runs at memcpy speed: 6 ms for 4000 x 4000 doubles on the development machine
//   (shmgemm-pool-benchmark, BM_CopyBackC4000), more if c's pages were never touched.
// - In process (chosen by the plan for small products) nothing is copied.
// Throws Error: shape_mismatch ("shapes (3,4) and (5,6) not aligned: ..."), resource,
// worker_failed, ... Thread-safety: may be called from several threads at once; fork from a
// program that already runs threads (its own, or OpenBLAS's) is safe only as far as fork is:
// prefer Launch::spawn there, or create a Pool before starting threads.
Report matmul(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c,
              const Options& options = {});
Report matmul(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c,
              const Options& options = {});

// Makes SIGINT, SIGTERM, SIGHUP and the other signals that end a process by default (SIGQUIT,
// SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGPIPE) stop the call in
// progress instead of killing the process: its workers are killed and reaped, segments and
// temporary files removed, the output left as it was, and the call throws
// Error(ErrorCode::interrupted). Only the calls running when the signal arrives stop: the next
// call runs as usual, and a Pool is never stopped (its jobs go on; a host that wants to stop
// waiting stops waiting). A signal ignored when this is called (nohup's SIGHUP) stays ignored.
// Installs process-wide handlers (SA_RESTART); call it once, from the main thread, in programs
// that own their signal handling (the shmgemm program does). interrupted_signal(): the latest
// such signal, or 0.
void handle_interrupts();
int interrupted_signal();

// Where calibrations are cached: $XDG_CACHE_HOME/shmgemm/calibration.json, or
// ~/.cache/shmgemm/calibration.json.
std::filesystem::path calibration_path();
// The cached calibration if there is a valid one for this many cores, else the defaults.
Calibration load_calibration();
// Measures this machine (a few seconds, using every core) and returns the figures.
Calibration measure_calibration();
// `c` as JSON (the cache's format); indent < 0: one line.
std::string calibration_json(const Calibration& c, int indent = -1);
// Writes `c` to calibration_path(). Throws Error naming the file.
void save_calibration(const Calibration& c);

// Median microseconds to start `workers` workers that do nothing and join them.
double launch_cost_us(Launch launch, unsigned workers, unsigned repeats = 20);

// CPUs this process may run on (its affinity mask).
unsigned available_cores();

std::string_view to_string(Launch launch);
std::string_view to_string(Backing backing);
// "in process x 2 threads", "2 workers x 1 thread".
std::string to_string(const PlanCandidate& candidate);
// The plan of a run and why it was chosen, a few lines ending in a newline.
std::string explain(const Report& report);

}  // namespace shmgemm
