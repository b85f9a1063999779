// The slice kernel: rows of C = A·B with OpenBLAS. It computes and nothing else; it knows
// nothing of processes, segments or files.
#pragma once

#include "common/dtype.hpp"
#include "common/matrix.hpp"
#include "common/partition.hpp"

#include <sched.h>

namespace shmgemm {

// Computes rows [rows.begin, rows.end) of C = A·B. A (m x k) and B (k x n) may be row- or
// column-major (a column-major operand goes through BLAS's transpose flag, uncopied); C is
// row-major. float32, float64, complex64 or complex128. With k = 0 the rows are set to zero. Every
// dimension and leading dimension must fit BLAS's 32-bit int (the coordinator checks).
// Thread-safety: reentrant.
void compute_rows(DType dtype, const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                  RowRange rows);

// `threads`, or fewer where an address-space limit (ulimit -v) leaves no room for their
// buffers (an OpenBLAS thread that cannot map one retries for ever); Error(resource) when not
// even one fits.
int affordable_blas_threads(int threads);

// Sets the number of threads OpenBLAS uses in this process (at most the affordable ones).
void set_blas_threads(int threads);

// OpenBLAS's thread count now (openblas_get_num_threads: a host's threadpoolctl limit, or
// OPENBLAS_NUM_THREADS, or the cores).
int blas_threads();

// For its lifetime, OpenBLAS uses `threads` threads in this process; then it has the count it
// had before again (and a pool that was down is left down). Whoever holds one must keep other
// threads from changing the count meanwhile.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int saved_ = 0;
  bool changed_ = false;
};

// The threads of OpenBLAS's own pool in this process (0 while it is down).
int blas_pool_threads();

// The most threads this OpenBLAS runs in one process (its build's MAX_THREADS; more are
// ignored), or 1024 where its configuration does not say.
int blas_max_threads();

// For its lifetime, places the calling thread and OpenBLAS's `threads - 1` pool threads on
// distinct CPUs of the caller's allowed set (the caller's own CPU first), and then gives them all
// the caller's former affinity again. Left alone, Linux often runs the pool thread that a call
// wakes on the caller's CPU (wake-affine) for milliseconds: OpenBLAS's threads then take turns
// at their sched_yield synchronisations, and a product of tens of milliseconds runs no faster on
// two threads than on one (docs/performance.md, target 7). Does nothing for one thread, with
// fewer allowed CPUs than threads, without OpenBLAS's openblas_setaffinity, or while another
// thread of the process holds a placement.
class BlasThreadPlacement {
 public:
  explicit BlasThreadPlacement(int threads);
  ~BlasThreadPlacement();
  BlasThreadPlacement(const BlasThreadPlacement&) = delete;
  BlasThreadPlacement& operator=(const BlasThreadPlacement&) = delete;

 private:
  int placed_ = 0;  // pool threads placed, plus the caller; 0: nothing changed
  cpu_set_t saved_{};
};

// Stops OpenBLAS's thread pool in this process, as OpenBLAS itself does before every fork; the
// next call that needs its threads starts it again. For a process about to wait on workers it
// did not fork: a pool spins on sched_yield for about 2^28 cycles after it starts or last ran,
// on the workers' cores. Done only where the calling thread is the process's one thread besides
// OpenBLAS's own (a program like the CLI): in a host with threads of its own, another of them
// may be in an OpenBLAS call.
void stop_blas_pool();

}  // namespace shmgemm
