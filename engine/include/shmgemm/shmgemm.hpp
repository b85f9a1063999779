// shmgemm's public API: C = A·B on worker processes that share A, B and C without copying.
#pragma once

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmgemm/array_view.hpp"
#include "shmgemm/dtype.hpp"
#include "shmgemm/error.hpp"
#include "shmgemm/export.hpp"
#include "shmgemm/matrix_view.hpp"
#include "shmgemm/pool.hpp"

namespace shmgemm {

// How workers start.
enum class Launch {
  fork,   // children of this process; they inherit its mappings, no exec
  spawn,  // the shmgemm-worker executable, started without a fork (vfork); it maps /proc/<pid>/fd/N
  // fork where no other thread of this process may be inside OpenBLAS (this process runs no
  // threads but the calling one, OpenBLAS's own and shmgemm's), else spawn: decided at each
  // call (and for each worker a Pool starts). A fork while another thread computes in OpenBLAS
  // deadlocks in OpenBLAS's fork handler; spawn runs none.
  automatic,
};

// Where A, B and C live while workers compute.
enum class Backing {
  shm,   // named POSIX shared-memory segments; .npy operands are read into them once
  file,  // the .npy files themselves, mapped; C is the output file's mapped data section
};

// What each call honours, and nothing else: an option that does not apply to a call does not
// compile with it.
//
// What every call with workers takes: calls that compute and a Pool.
struct WorkerOptions {
  // Worker processes; 0: the automatic plan (in process, or 1..cores; a Pool: one per core).
  unsigned workers = 0;
  // OpenBLAS threads in each worker (or in process); 0: cores / workers, >= 1, and at most
  // OPENBLAS_NUM_THREADS (else OMP_NUM_THREADS) when the environment sets it, as numpy's
  // OpenBLAS would. At most max_threads_per_worker().
  unsigned threads = 0;
  Launch launch = Launch::automatic;
  // Give up after this many seconds: the workers are killed, the output left as it was, and the
  // call throws Error(timed_out) naming the workers that had not finished and how far each got.
  // 0 or infinity: no limit; negative or NaN: Error(invalid_argument). In process, checked
  // between steps of rows; a product whose work is all done is never discarded. A Pool: per
  // job; a worker still on the rows of a job past it is killed and replaced.
  double timeout = 0;
};

// Every call that computes: matmul(), matmul_into(), matmul_many(), multiply_files().
struct CallOptions : WorkerOptions {
  bool in_process = false;  // no workers: one OpenBLAS call in this process
  // Draw a progress bar on stderr for runs longer than a second, when stderr is a terminal.
  bool progress = false;
  // Stops this call when a stop is requested on it, as an interrupt does (workers killed and
  // reaped, the output left as it was, Error(interrupted)), and no other call.
  std::stop_token stop;
};

// matmul_many(): a set of products.
struct ManyOptions : CallOptions {
  // Products computed as one product over their windows' union (matmul_many finds them): each
  // result copied out of it, an array of its own (true), or a view of it, read-only, as numpy's
  // sliding_window_view gives windows (false: no copy; OwnedArray::read_only says which).
  bool copy = true;
};

// matmul() and matmul_into(): one product of arrays in memory.
struct MatmulOptions : CallOptions {
  // Each worker works on its own private copy of B and of its rows of A, as joblib does
  // without memmapping: for footprint experiments, never faster.
  bool copy_inputs = false;
  // A failed block is recomputed in a fresh worker up to this many times (at most 100).
  unsigned retries = 0;
  // Called once for each worker found stopped by a signal (SIGSTOP, a debugger) while a run
  // waits for it: "worker 1 (rows 150-299) is stopped by SIGSTOP; waiting for it". May be empty.
  std::function<void(const std::string&)> on_stall;
  // Called on each retry with a one-line explanation ("worker 1 (rows 2000-3999) was killed by
  // signal 9; retrying (1 of 2)"). May be empty.
  std::function<void(const std::string&)> on_retry;
};

// multiply_files(): a product of .npy files into a .npy file.
struct FileOptions : MatmulOptions {
  Backing backing = Backing::file;
  // Larger than memory: compute this many rows of C at a time and release the pages of A and C
  // that are done (file backing only). 0: only when A, B and C do not fit in the memory
  // available (MemAvailable, or the memory cgroup's limit), then 512 rows.
  std::uint64_t rows_per_step = 0;
  // Larger than memory: the bytes this call may keep resident (its buffers, and the pages of
  // A, B and C it holds). When B does not fit with a step of rows, B is taken in column panels
  // that do, A streamed by rows against each panel, C written block by block (file backing, two
  // matrices). 0: the memory available (MemAvailable, or the memory cgroup's limit less its
  // usage) less an eighth.
  std::uint64_t memory = 0;
  // Write the output to disk (fdatasync) before renaming it into place, and the folder after
  // (fsync), so that after a power loss the output is the old file or the whole new one, never
  // a valid-looking file of zeros. Costs the time the disk takes to write C.
  bool fsync = false;
};

// Pool: persistent workers.
struct PoolOptions : WorkerOptions {
  // Bytes of the shared arena; 0: half of /dev/shm's free space. Pages are reserved as they are
  // allocated, so a large arena costs nothing until used.
  std::size_t arena_bytes = 0;
};

// Every setting at once, as releases before the per-call types took them. Deprecated: the
// calls that take it refuse, at run time, a setting that does not apply (Error(invalid_argument)
// naming it); the per-call types above make that a compile-time error.
struct Options {
  unsigned workers = 0;  // worker processes; 0: the automatic plan (see Plan)
  // OpenBLAS threads in each worker; 0: cores / workers, >= 1, and at most OPENBLAS_NUM_THREADS
  // (else OMP_NUM_THREADS) when the environment sets it, as numpy's OpenBLAS would.
  unsigned threads_per_worker = 0;
  Launch launch = Launch::automatic;
  Backing backing = Backing::file;
  bool in_process = false;  // no workers: one OpenBLAS call in this process
  // Each worker works on its own private copy of B and of its rows of A, as joblib does
  // without memmapping: for footprint experiments (`--inputs copy`), never faster.
  bool copy_inputs = false;
  // Larger than memory: compute this many rows of C at a time and release the pages of A and C
  // that are done (file backing). 0: only when A, B and C do not fit in the memory available
  // (MemAvailable, or the memory cgroup's limit), then 512 rows.
  std::uint64_t rows_per_step = 0;
  // Larger than memory: the bytes the call may keep resident; 0: the memory available less an
  // eighth (see FileOptions::memory).
  std::uint64_t memory = 0;
  // Draw a progress bar on stderr for runs longer than a second, when stderr is a terminal.
  bool progress = false;
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
  // (and which were stopped by a signal). 0 or infinity: no limit; negative or NaN: refused
  // (Error(invalid_argument)). In process, checked between steps of rows; a product whose work
  // is all done is never discarded. A Pool: per job; a worker still on a timed-out job's rows is
  // killed and replaced.
  double timeout = 0;
  // Stops this call when a stop is requested on it, as an interrupt does (workers killed and
  // reaped, the output left as it was, Error(interrupted)), and no other call: each call, or
  // each thread, may have a std::stop_source of its own. In process, checked between steps of
  // rows (a long product runs in steps when a stop is possible).
  std::stop_token stop;
  // Called once for each worker found stopped by a signal (SIGSTOP, a debugger) while a run
  // waits for it: "worker 1 (rows 150-299) is stopped by SIGSTOP; waiting for it". May be empty.
  std::function<void(const std::string&)> on_stall;
  // Called on each retry with a one-line explanation ("worker 1 (rows 2000-3999) was killed by
  // signal 9; retrying (1 of 2)"). May be empty.
  std::function<void(const std::string&)> on_retry;
};

// One plan the automatic choice considered.
struct PlanCandidate {
  unsigned workers = 0;  // 0: in process
  unsigned threads = 0;
  double predicted_seconds = 0;
};

// What a run did.
struct SHMGEMM_API Report {
  std::uint64_t m = 0, k = 0, n = 0;            // one product: (m x k) @ (k x n)
  std::uint64_t batch = 1;                      // products (stacked operands)
  std::vector<std::uint64_t> a_shape, b_shape;  // the operands' shapes, as given
  std::vector<std::uint64_t> shape;             // the result's: np.matmul's shape
  std::string dtype;                            // the result's, numpy's name
  unsigned workers = 0;                         // 0 when the product ran in process or was empty
  unsigned threads_per_worker = 0;
  Launch launch = Launch::fork;  // as it was decided (never automatic when workers ran)
  Backing backing = Backing::file;
  bool in_process = false;
  double seconds = 0;                     // the whole call: open, place, compute, write
  double compute_seconds = 0;             // first worker started to last worker joined
  unsigned retries = 0;                   // blocks recomputed after a worker failed
  unsigned launches = 0;                  // worker processes started (0 in process or a Pool)
  std::uint64_t copied_bytes = 0;         // copied to place operands and to bring C back
  std::uint64_t rows_per_step = 0;        // when streaming: rows of C per step; 0: not
  std::uint64_t memory_budget = 0;        // when streaming: the bytes it kept within
  std::uint64_t panel_columns = 0;        // out of core: B's columns per panel; 0: B whole
  std::uint64_t panels = 0;               // out of core: B's panels (A read once for each)
  std::uint64_t slab_depth = 0;           // out of core: A and B read once, slabs this deep
  std::uint64_t prepared_bytes = 0;       // B converted once (dtype or integer limbs), shared
  unsigned limb_products = 0;             // integers: dgemm calls per product; 0: not integers
  bool automatic = false;                 // the plan was chosen by the cost model
  std::vector<PlanCandidate> candidates;  // what the automatic plan weighed
  std::string plan_reason;                // why this plan, in one line
  std::string calibration;                // where the figures came from
  double gflops() const;                  // 2 batch mnk / seconds
};

// The report as one line of JSON, the object `shmgemm multiply --json` prints and Python's
// last_report() gives: m, k, n, batch, a_shape, b_shape, shape, dtype, workers,
// threads_per_worker, launch ("fork", "spawn", or "none" in process), backing, in_process,
// seconds, compute_seconds, gflops, retries, launches, copied_bytes, rows_per_step,
// memory_budget, panel_columns, panels, slab_depth, prepared_bytes,
// limb_products, and plan: {automatic, reason, calibration, candidates: [{workers, threads,
// predicted_seconds}]}.
SHMGEMM_API std::string to_json(const Report& report);

// np.matmul's result for operands of these shapes, whatever their strides: numpy's rules (1-D
// operands, broadcast stacks). Throws Error(shape_mismatch) with numpy's message ("matmul:
// Input operand 1 has a mismatch in its core dimension 0, ...").
SHMGEMM_API std::vector<std::int64_t> matmul_shape(const ArrayView& a, const ArrayView& b);
// The flops of np.matmul(a, b), 2 x batch x m x n x k, as the shapes give them (1-D operands as
// numpy takes them, batch axes broadcast); 0 for an empty operand. Never throws: shapes numpy
// refuses are matmul_shape's to report.
SHMGEMM_API double matmul_flops(std::span<const std::int64_t> a_shape,
                                std::span<const std::int64_t> b_shape);
SHMGEMM_API double matmul_flops(const ArrayView& a, const ArrayView& b);
// np.result_type of the operands: numpy's promotion over the twelve dtypes (int32 @ float32 ->
// float64, uint64 @ int64 -> float64).
SHMGEMM_API DType result_dtype(DType a, DType b);
SHMGEMM_API DType result_dtype(const ArrayView& a, const ArrayView& b);

// out = np.matmul(a, b) for arrays in the host program's memory, on worker processes (or in
// process, when the plan finds the product too small for workers); blocks until done. Every
// dtype pair (numpy's promotion; integers exact, wrapping as numpy's do), 1-D operands, N-D
// stacks with broadcast batch axes, any strides. `out` must have matmul_shape(a, b) (else
// Error(shape_mismatch)) and result_dtype(a, b) (else Error(invalid_argument)), and may have
// any strides. The plan and launch follow `options` (workers = 0: the automatic plan).
// - Operands are read where they are when their strides are non-negative multiples of their
//   item size (C or Fortran order, slices, broadcast axes of stride 0); others are copied
//   once, in C order (Report::copied_bytes counts it).
// - A stack of overlapping windows of one array (b of shape (count, k, n) whose batch stride is
//   a whole number of column strides, fewer than n, as numpy's sliding_window_view gives)
//   times one matrix is computed as the one product the windows are part of, and each window's
//   product is copied out of it (mirrored: row windows of a times one b).
// - fork: workers inherit a and b copy-on-write: no copy. spawn: a and b are copied once into
//   shared segments (unless they lie in a Pool's arena), since a new process cannot see this
//   one's memory.
// - With workers, C is written into shared memory and copied once into out, unless out is
//   C-contiguous in a Pool's arena, where workers write it in place. In process, C is written
//   into out directly when it is C-contiguous.
// Throws Error: shape_mismatch, invalid_argument, unsupported, resource, worker_failed,
// interrupted, timed_out. Thread-safety: may be called from several threads at once; fork
// from a program that already runs threads (its own, or OpenBLAS's) is safe only as far as
// fork is: prefer Launch::spawn there, or create a Pool before starting threads.
SHMGEMM_API Report matmul_into(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                               const MatmulOptions& options = {});

// An array the engine allocated (C order): `owner` frees its memory when the last copy of it is
// gone (a Python array's base holds one).
struct OwnedArray {
  MutableArrayView view;
  std::shared_ptr<void> owner;
  // A view of memory that other results view too (matmul_many with ManyOptions::copy false):
  // to be read, not written.
  bool read_only = false;
  // The elements, as T: throws Error(invalid_argument) unless T is the array's dtype
  // (dtype_of<T>(): double for float64, std::complex<float> for complex64, ...).
  template <class T>
  T* data() const {
    if (view.dtype() != dtype_of<T>())
      throw Error(ErrorCode::invalid_argument, std::string("OwnedArray::data: the array holds ") +
                                                   std::string(dtype_name(view.dtype())) +
                                                   ", not " +
                                                   std::string(dtype_name(dtype_of<T>())));
    return static_cast<T*>(view.mutable_data());
  }
};

// np.matmul(a, b) into a new array, allocated where this call's plan writes it, so that
// nothing is copied back: in process, private memory (huge pages where the kernel gives them);
// with workers, a memory file (memfd) that they write through a shared mapping, which this
// process sees through a private one. The array behaves as any other: a later fork of this
// process gets copy-on-write pages of it, not shared ones; the first write to each of its pages
// copies that page. The rest as matmul() above; `report`, when given, receives the report.
SHMGEMM_API OwnedArray matmul(const ArrayView& a, const ArrayView& b,
                              const MatmulOptions& options = {}, Report* report = nullptr);

// Any set of products at once: [np.matmul(a, b) for (a, b) in pairs], each pair of its own
// shapes and dtypes, each result a new array as above (all of them in one block of memory,
// freed with the last of them). Fork workers only (options.launch = spawn: Error(unsupported);
// use a Pool): each is forked once and computes its share of the products one after another
// with one OpenBLAS thread, largest first to the least loaded worker (a product of more than a
// worker's share split by rows), reading the operands where they are. options.workers = 0:
// one per core, or none (every product here, with every core's threads, each result an array
// of its own) when the products average under 50 MFLOP (measured: packing dominates them, and
// workers gain nothing) or launching workers would cost about what the set takes. Every pair
// is checked before any work (Error(shape_mismatch) names the pair). Pairs that share work are
// found first: one a times column windows of one array (b's that overlap or touch, a whole number
// of columns apart, of one dtype, depth and strides), or row windows of one array times one b, are
// computed as one product over the windows' union, each result copied out of it, or, with
// options.copy false, a read-only view of it (Report's plan_reason says so). `report`, when
// given: the plan.
SHMGEMM_API std::vector<OwnedArray> matmul_many(
    std::span<const std::pair<ArrayView, ArrayView>> pairs, const ManyOptions& options = {},
    Report* report = nullptr);

// The 2-D float conveniences over matmul_into (numpy's 2-D messages: "shapes (3,4) and (5,6)
// not aligned: 4 (dim 1) != 5 (dim 0)").
SHMGEMM_API Report matmul_into(MatrixView<const double> a, MatrixView<const double> b,
                               MatrixView<double> c, const MatmulOptions& options = {});
SHMGEMM_API Report matmul_into(MatrixView<const float> a, MatrixView<const float> b,
                               MatrixView<float> c, const MatmulOptions& options = {});

// C = np.matmul(A, B) for the .npy files `a` and `b` (any of the twelve dtypes, C or Fortran
// order, 1-D or N-D), written to `out` as a C-order .npy of numpy's result dtype and shape.
// `out` is replaced only by a complete result: written under a temporary name beside it and
// renamed at the end (symlinks followed, the old file's mode kept; with options.fsync, on disk
// first). Options::backing says where the workers read and write (the files mapped, or shared
// segments the files are copied into); FileOptions::rows_per_step streams a product larger
// than memory. Throws Error naming the file or option at fault. Thread-safety: may be called
// from several threads at once.
SHMGEMM_API Report multiply_files(const std::filesystem::path& a, const std::filesystem::path& b,
                                  const std::filesystem::path& out,
                                  const FileOptions& options = {});

// The spellings of releases before the per-call option types, for one more release. Each takes
// Options (every setting) and refuses at run time what does not apply to it. The templates
// accept Options alone, so that `matmul(a, b, {})` means the call above.
namespace legacy {
SHMGEMM_API Report matmul_all(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                              const Options& options);
SHMGEMM_API OwnedArray matmul_all(const ArrayView& a, const ArrayView& b, const Options& options,
                                  Report* report);
SHMGEMM_API std::vector<OwnedArray> matmul_many_all(
    std::span<const std::pair<ArrayView, ArrayView>> pairs, const Options& options, Report* report);
SHMGEMM_API Report matmul_all(MatrixView<const double> a, MatrixView<const double> b,
                              MatrixView<double> c, const Options& options);
SHMGEMM_API Report matmul_all(MatrixView<const float> a, MatrixView<const float> b,
                              MatrixView<float> c, const Options& options);
SHMGEMM_API Report multiply_files_all(const std::filesystem::path& a,
                                      const std::filesystem::path& b,
                                      const std::filesystem::path& out, const Options& options);
template <class T>
concept AllOptions = std::same_as<std::remove_cvref_t<T>, Options>;
template <class T>
concept AnArrayView = std::same_as<std::remove_cvref_t<T>, MutableArrayView>;
}  // namespace legacy

template <legacy::AnArrayView Out, legacy::AllOptions O = Options>
[[deprecated("use matmul_into(a, b, out, MatmulOptions)")]] Report matmul(const ArrayView& a,
                                                                          const ArrayView& b,
                                                                          Out&& out,
                                                                          const O& options = {}) {
  return legacy::matmul_all(a, b, out, options);
}
template <legacy::AllOptions O>
[[deprecated("use matmul(a, b, MatmulOptions)")]] OwnedArray matmul(const ArrayView& a,
                                                                    const ArrayView& b,
                                                                    const O& options,
                                                                    Report* report = nullptr) {
  return legacy::matmul_all(a, b, options, report);
}
template <legacy::AllOptions O>
[[deprecated("use matmul_many(pairs, ManyOptions)")]] std::vector<OwnedArray> matmul_many(
    std::span<const std::pair<ArrayView, ArrayView>> pairs, const O& options,
    Report* report = nullptr) {
  return legacy::matmul_many_all(pairs, options, report);
}
template <legacy::AllOptions O = Options>
[[deprecated("use matmul_into(a, b, c, MatmulOptions)")]] Report matmul(MatrixView<const double> a,
                                                                        MatrixView<const double> b,
                                                                        MatrixView<double> c,
                                                                        const O& options = {}) {
  return legacy::matmul_all(a, b, c, options);
}
template <legacy::AllOptions O = Options>
[[deprecated("use matmul_into(a, b, c, MatmulOptions)")]] Report matmul(MatrixView<const float> a,
                                                                        MatrixView<const float> b,
                                                                        MatrixView<float> c,
                                                                        const O& options = {}) {
  return legacy::matmul_all(a, b, c, options);
}
[[deprecated("use multiply_files(a, b, out, FileOptions)")]] inline Report multiply_npy(
    const std::filesystem::path& a, const std::filesystem::path& b,
    const std::filesystem::path& out, const Options& options = {}) {
  return legacy::multiply_files_all(a, b, out, options);
}

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
SHMGEMM_API void handle_interrupts();
SHMGEMM_API int interrupted_signal();
// For hosts that own their signal handling (a Python interpreter): calls from here on can be
// stopped by request_interrupt(), and long in-process products run in steps so that they can,
// but no signal handler is installed. handle_interrupts() implies it.
SHMGEMM_API void enable_interrupt_requests();
// Stops the calls in progress, in every thread, as if `sig` had arrived under
// handle_interrupts(): their workers are killed, and they throw Error(interrupted).
// Async-signal-safe. To stop one call only, give it a stop token (Options::stop).
SHMGEMM_API void request_interrupt(int sig);

// CPUs this process may run on (its affinity mask).
SHMGEMM_API unsigned available_cores();
// The flops (2 m k n) of the largest square product of `dtype` that the automatic plan keeps in
// the calling process on these cores because launching one worker would take longer than the
// whole product: a caller loses nothing by computing a product that small itself.
SHMGEMM_API double in_process_flops(DType dtype);
// The most CallOptions::threads and PoolOptions::threads take: OpenBLAS's MAX_THREADS (the most it
// runs in one process).
SHMGEMM_API unsigned max_threads_per_worker();

// Held while the calling thread computes in OpenBLAS itself (a cblas call of the host's, numpy's
// matmul): shmgemm forks no worker meanwhile, since a fork while another thread is inside
// OpenBLAS deadlocks in OpenBLAS's own fork handler; shmgemm's in-process products run
// meanwhile. The plain constructor waits for a fork in progress; the try_to_lock one does not
// (owns() says whether it holds). Never held across a call of shmgemm's in the same thread.
class SHMGEMM_API HostBlasGuard {
 public:
  HostBlasGuard();
  explicit HostBlasGuard(std::try_to_lock_t);
  ~HostBlasGuard();
  HostBlasGuard(const HostBlasGuard&) = delete;
  HostBlasGuard& operator=(const HostBlasGuard&) = delete;
  bool owns() const { return held_; }

 private:
  bool held_;
};

// What Launch::automatic stands for in a call made from this thread now: fork where no other
// thread of this process may be inside OpenBLAS (none but this one, OpenBLAS's own and
// shmgemm's), else spawn. A host that runs calls on a thread of its own while the calling thread
// waits (which then counts as another thread) decides in the calling thread first.
SHMGEMM_API Launch automatic_launch();

// OpenBLAS's kernels: those this process runs ("Prescott"), and those shmgemm's worker
// processes run ("SkylakeX"). They differ only where OpenBLAS does not know the CPU and falls
// back to kernels far slower than the CPU's (OpenBLAS 0.3.21 on a CPU newer than it): the
// workers then run the kernels the CPU's features call for, while this process keeps OpenBLAS's
// choice, since switching OpenBLAS while another thread computes in it is unsafe. Starting the
// program with OPENBLAS_CORETYPE=<workers> gives it the same kernels. shmgemm never changes
// this process's OpenBLAS or environment. See docs/performance.md.
struct BlasKernel {
  std::string name;     // this process's
  std::string workers;  // shmgemm's workers'
};
SHMGEMM_API BlasKernel blas_kernel();

// What shmgemm runs on here, as one JSON object (Python's show_config()): version; openblas
// (OpenBLAS's build, openblas_get_config()); kernels {host, workers} (blas_kernel()); cores;
// calibration {file, source (the file, or built-in defaults and why), figures (the cost
// model's, as `shmgemm calibrate` caches them)}; plan_4000: the automatic plan for a 4000 x 4000
// float64 product from this thread now, {reason, candidates, workers, threads_per_worker,
// in_process}, planned and not run.
SHMGEMM_API std::string configuration_json();

SHMGEMM_API std::string_view to_string(Launch launch);
SHMGEMM_API std::string_view to_string(Backing backing);
}  // namespace shmgemm
