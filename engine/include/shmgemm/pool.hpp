// shmgemm::Pool: persistent workers, started once and reused. Public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <type_traits>

#include <vector>

#include "shmgemm/array_view.hpp"
#include "shmgemm/error.hpp"
#include "shmgemm/export.hpp"
#include "shmgemm/matrix_view.hpp"

namespace shmgemm {

struct Options;
struct PoolOptions;
struct Report;
class Pool;

namespace detail {
class PoolState;
}  // namespace detail

// A block of a Pool's arena, freed when the last owner lets it go; it keeps the pool's memory
// mapped until then, even past the Pool.
using PoolBlock = std::shared_ptr<void>;

// A row-major matrix in a Pool's shared memory: operands here reach the workers with no copy.
// Move-only; frees its memory when destroyed. Thread-safety: as a value; the elements are the
// caller's to guard.
template <class T>
class SharedMatrix {
 public:
  SharedMatrix(SharedMatrix&&) noexcept = default;
  SharedMatrix& operator=(SharedMatrix&&) noexcept = default;
  SharedMatrix(const SharedMatrix&) = delete;
  SharedMatrix& operator=(const SharedMatrix&) = delete;

  T* data() const { return static_cast<T*>(block_.get()); }
  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  MatrixView<T> view() const { return MatrixView<T>(data(), rows_, cols_); }

 private:
  friend class Pool;
  SharedMatrix(PoolBlock block, std::size_t rows, std::size_t cols)
      : block_(std::move(block)), rows_(rows), cols_(cols) {}
  PoolBlock block_;
  std::size_t rows_ = 0, cols_ = 0;
};

// A C-contiguous N-D array in a Pool's shared memory, zero-filled. Move-only; frees its memory
// when destroyed (share() gives the block to another owner, such as a Python array's base).
class SHMGEMM_API SharedArray {
 public:
  SharedArray(SharedArray&&) noexcept = default;
  SharedArray& operator=(SharedArray&&) noexcept = default;
  SharedArray(const SharedArray&) = delete;
  SharedArray& operator=(const SharedArray&) = delete;

  void* data() const { return block_.get(); }
  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  MutableArrayView view() const { return MutableArrayView(data(), dtype_, shape_); }
  // The block, for an owner that outlives this object.
  PoolBlock share() const { return block_; }

 private:
  friend class Pool;
  SharedArray(PoolBlock block, DType dtype, std::vector<std::int64_t> shape)
      : block_(std::move(block)), dtype_(dtype), shape_(std::move(shape)) {}
  PoolBlock block_;
  DType dtype_ = DType::float64;
  std::vector<std::int64_t> shape_;
};

// How a job submitted to a Pool may be stopped.
struct JobControl {
  // A stop requested before the job starts: it never runs, and its future throws
  // Error(cancelled). Once a worker has taken it, nothing (concurrent.futures' cancel()).
  std::stop_token cancel;
  // A stop requested at any time: before the job starts, as `cancel`; while it runs, the
  // workers on its rows are killed (and replaced: the pool goes on), and its future throws
  // Error(interrupted) once they are gone, so that its operands may be freed then.
  std::stop_token stop;
};

// What a pool has done so far.
struct PoolStats {
  std::uint64_t jobs = 0;              // products completed (or failed)
  std::uint64_t tasks = 0;             // blocks of rows run by workers
  std::uint64_t staged_bytes = 0;      // copied into the pool for operands outside its memory,
                                       // and back out for results outside it
  std::uint64_t workers_replaced = 0;  // workers that died and were started again
  std::uint64_t failed_jobs = 0;       // of those, failed (cancelled ones are not counted)
  std::uint64_t arena_used_bytes = 0;  // allocated in the arena now (SharedMatrix and staging)
};

// Persistent worker processes and a shared arena. Jobs reach the workers through a task queue
// in shared memory (a robust process-shared mutex and semaphores); operands are offsets into
// the arena. Each product is split into blocks of rows, one task each.
//
// Launching: the workers are started (fork or spawn, as options.launch says; options.workers
// of them, 0: one per core) by the pool's own monitor thread, so they live exactly as long as
// the pool (PR_SET_PDEATHSIG follows the thread that started them). fork in a program that
// already runs threads is safe only as far as fork is (glibc and OpenBLAS handle it); spawn
// starts shmgemm-worker and never forks the host's state. The pool's shared memory is never
// named: spawned workers map it through /proc/<pid>/fd/N, so a crash leaves nothing behind.
// Interrupts (handle_interrupts()) never stop a pool; Options::timeout bounds each job.
//
// A worker that dies fails only the tasks it held: their jobs' futures carry
// Error(worker_failed), and the pool starts a new worker in its place.
//
// A pool belongs to the process that made it. In another process (a child made by fork()),
// every call throws Error(wrong_process) ("this Pool belongs to process N"), and close() and
// the destructor do nothing there: the workers, the queue and the arena are the parent's, and
// the parent's pool goes on as if the child had never been. Blocks of the arena a child holds
// are the parent's too: freeing them in the child does nothing.
class SHMGEMM_API Pool {
 public:
  // Starts the workers (one per core) and maps the arena (half of /dev/shm's free space,
  // reserved page by page as it is allocated). Throws Error. Thread-safety: n/a.
  Pool();
  // The same, as `options` say (PoolOptions: workers, threads, launch, arena_bytes, timeout).
  explicit Pool(const PoolOptions& options);
  // Every setting at once (Options::pool_bytes is the arena), as releases before PoolOptions
  // took them; a setting that does not apply to a Pool is refused (Error(invalid_argument)).
  template <class O>
  requires std::is_same_v<O, Options>
  [[deprecated("use Pool(PoolOptions)")]] explicit Pool(const O& options)
      : Pool(FromAll{}, options) {}
  // close(). Must not run while another thread uses the pool.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Stops and joins the workers; jobs not finished fail with Error(shut_down). Afterwards every
  // call but close() throws Error(shut_down) ("the pool is closed"); arrays already allocated
  // stay valid. Closing again does nothing. Thread-safe.
  void close();
  bool closed() const;

  // A rows x cols matrix in the pool's shared memory, zero-filled. Throws Error(resource) when
  // the arena or /dev/shm is full, Error(invalid_argument) when the size overflows. Thread-safe.
  template <class T>
  SharedMatrix<T> alloc(std::size_t rows, std::size_t cols) {
    static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>);
    std::size_t elements = 0, bytes = 0;
    if (__builtin_mul_overflow(rows, cols, &elements) ||
        __builtin_mul_overflow(elements, sizeof(T), &bytes))
      throw Error(ErrorCode::invalid_argument, "Pool::alloc: " + std::to_string(rows) + " x " +
                                                   std::to_string(cols) + " elements of " +
                                                   std::to_string(sizeof(T)) +
                                                   " bytes overflow the size of memory");
    return SharedMatrix<T>(allocate(bytes), rows, cols);
  }
  // A C-contiguous array of `shape` in the pool's shared memory, zero-filled. Throws as above,
  // and Error(invalid_argument) for a negative dimension. Thread-safe.
  SharedArray alloc(DType dtype, std::vector<std::int64_t> shape);

  // out = np.matmul(a, b), with matmul()'s rules (every dtype pair, 1-D, broadcast stacks, any
  // strides), on the pool's workers; returns when done. Operands outside the pool's memory are
  // staged: a and b copied in, C computed in the pool and copied out (counted in
  // stats().staged_bytes). Throws Error. Thread-safe: any number of threads may submit at once.
  Report matmul(const ArrayView& a, const ArrayView& b, const MutableArrayView& out);
  // The same, without waiting. a, b and out must stay valid until the future is ready. Shape
  // and dtype errors throw here; failures while computing arrive through the future.
  // `on_done`, when given, is called once the future is ready: from the pool's monitor thread
  // (or from the thread that submits or stops the job). It must be quick and must not call the
  // pool. `control`: how the job may be stopped.
  std::future<Report> submit(const ArrayView& a, const ArrayView& b, const MutableArrayView& out,
                             std::function<void()> on_done = {}, JobControl control = {});

  // Any set of products without waiting: out = np.matmul(a, b) for each, each a job of its own,
  // submitted largest first (so that the workers finish together); the futures in the order of
  // `products`, each ready when its product is. Every product is checked before any is
  // submitted: Error(shape_mismatch or invalid_argument) naming the product ("product 3: ...").
  // The rest as submit().
  struct Product {
    ArrayView a, b;
    MutableArrayView out;
  };
  std::vector<std::future<Report>> submit_many(std::span<const Product> products);

  // The 2-D float conveniences over the above.
  Report matmul(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> c);
  Report matmul(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> c);
  std::future<Report> submit(MatrixView<const double> a, MatrixView<const double> b,
                             MatrixView<double> c);
  std::future<Report> submit(MatrixView<const float> a, MatrixView<const float> b,
                             MatrixView<float> c);

  unsigned workers() const;  // thread-safe
  PoolStats stats() const;   // thread-safe

 private:
  struct FromAll {};
  Pool(FromAll, const Options& options);
  // `bytes` zero-filled bytes of the arena, 64-byte aligned.
  PoolBlock allocate(std::size_t bytes);
  std::shared_ptr<detail::PoolState> state_;
};

}  // namespace shmgemm
