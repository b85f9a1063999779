// The plan for one product: in process, or how many workers with how many BLAS threads each and
// which rows each computes; chosen by a cost model when the caller leaves it open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "common/partition.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {

// The entry points that take Options: the fields that apply differ.
enum class Entry {
  files,   // multiply_npy: .npy files, mapped
  matmul,  // matmul: the host program's memory
  pool,    // Pool's constructor
};

// Checks every field of `o` that `entry` reads, and refuses a field it does not apply (a field
// an entry point ignores is one a user believes in), naming it: "Options::workers = 300: at
// most 256". Throws Error(invalid_argument).
void check_options(const Options& o, Entry entry);

// A per-call options type's settings as the engine takes them (every other field its default).
Options all_options(const WorkerOptions& o);
Options all_options(const CallOptions& o);
Options all_options(const MatmulOptions& o);
Options all_options(const FileOptions& o);
Options all_options(const PoolOptions& o);

// The work of one call: m rows of the flattened C (batch products of m / batch rows each), k, n,
// and the BLAS type the cost model rates (float32 or float64).
struct ProductShape {
  std::uint64_t m = 0, k = 0, n = 0;
  DType dtype = DType::float64;
  std::uint64_t batch = 1;
  std::size_t c_item = 0;  // bytes of one element of C; 0: item_size(dtype)
};

// The one rule that splits work, for one-shot runs, the Pool and MPI: p.m rows of the
// flattened C dealt out to parts in proportion to `weights` (one per part: 1 each, or the
// cores of an MPI rank), contiguous in order. The unit dealt out is a whole product when there
// are at least as many products as parts, else a run of rows that spans whole cache lines of C
// (cache_line_rows) when every part can get one, else a row. Parts beyond the units get none:
// callers cap the parts at p.m first (no idle worker).
struct WorkSplit {
  std::size_t block_factor = 1;
  std::vector<RowRange> rows;  // one per part
};
// `kernel_rows`: boundaries also at multiples of it (where every part can get a unit): 32
// puts them where OpenBLAS's kernels start a tile of rows in one call over all of A's rows
// (their tiles are 2 to 32 rows), so that each row comes out with the same bits as there.
WorkSplit split_work(const ProductShape& p, std::span<const unsigned> weights,
                     std::size_t kernel_rows = 1);
// Equal parts: min(parts, p.m) of them.
WorkSplit split_work(const ProductShape& p, std::size_t parts);

// A set of products dealt out to `parts` workers: `flops[i]` the work of product i, `rows[i]` the
// rows its result can be split into (0 or 1: not at all). A product of more than a fair share
// (the set's flops / parts) is cut into that many pieces of rows, at most `parts` and at most
// its rows, each within one row of equal (partition_rows); then the pieces, largest first, each
// go to the part with the least work so far (ties: the lowest part). Every row of every product
// is in exactly one piece; a part's work is at most the fair share plus its last piece.
struct ProductPiece {
  std::size_t product = 0;
  RowRange rows;  // of the product's result; {0, rows} (or {0, 0} unsplittable) when whole
  double flops = 0;
};
std::vector<std::vector<ProductPiece>> split_products(std::span<const double> flops,
                                                      std::span<const std::uint64_t> rows,
                                                      std::size_t parts);

struct Plan {
  bool in_process = false;
  std::size_t workers = 0;  // 0 in process
  std::size_t threads_per_worker = 1;
  std::size_t block_factor = 1;
  std::vector<RowRange> rows;  // one per worker, contiguous, covering [0, m)
  bool automatic = false;
  std::vector<PlanCandidate> candidates;
  std::string reason;
  // A set of products in process: this many threads run them side by side, each product on
  // one OpenBLAS thread; 0: one after another, on threads_per_worker OpenBLAS threads.
  std::size_t side_by_side = 0;
};

// A set of products as its plan sees it.
struct SetShape {
  std::size_t count = 0;
  double flops = 0;    // all of the products'
  double largest = 0;  // the largest one's
};

// Workers run a set only when its products average at least this many flops: measured on sets
// of products of 20-400 a side (18 MFLOP on average), one-thread workers ran no faster than the
// process, and they fault in fresh shared pages for every result.
inline constexpr double kWorkerProductFlops = 5e7;

// What weighing workers against the process costs to know (the calibration, the page tables):
// the one-thread float64 rate in GFLOP/s, and the seconds to launch `workers` workers.
struct SetCosts {
  double gflops_f64 = 0;
  double launch_seconds = 0;
};
using SetCostsOf = std::function<SetCosts(std::size_t workers)>;

// The plan for a set of products (matmul_many). Options fixed by the caller are kept
// (in_process, workers, threads). Workers are forked, one OpenBLAS thread each, largest first
// (split_products): at most the products; with workers == 0 one per core, and only when the
// products average at least kWorkerProductFlops and the set takes at least four launches on
// the cores at 0.6 of the one-thread rate (`costs`, asked only then). Never when
// `fork_safe` is false (another thread may be inside OpenBLAS; only forked workers read the
// operands where they are). In process, the products run side by side on `threads` threads
// (options' threads_per_worker, else the cores within blas_thread_limit(), and at most
// `host_threads`, the host's OpenBLAS count) when there are two or more of them, fork_safe
// holds (the count is then set to 1 for the call), and no product is more than a thread's
// share of the set; otherwise one after another on that many OpenBLAS threads.
Plan plan_set(const SetShape& s, const Options& options, std::size_t cores,
              std::size_t host_threads, bool fork_safe, const SetCostsOf& costs);

// The Pool's plan: its workers, or one of them for a product too small to split (below 1e7
// flops, splitting costs more than it saves).
Plan pool_plan(const ProductShape& p, std::size_t workers, std::size_t threads);

// "0.135 ms", "12.3 ms", "1.07 s".
std::string duration_string(double seconds);
// "2 workers", "1 thread".
std::string count(unsigned n, std::string_view noun);
// "in process x 2 threads", "2 workers x 1 thread".
std::string describe(const PlanCandidate& x);

// The cost model. Seconds for the product in this process with `threads` BLAS threads:
// 2mnk / rate. For a skinny product (longest dimension >= 8x the shortest, shortest <= 256)
// the rate is its class's measured one-thread rate x threads x its measured thread scaling
// (OpenBLAS's threads gain little there); otherwise the square one-thread rate x d / (d + h)
// for the smallest dimension d (h = half_rate_dim) x threads x the square thread scaling (at
// d = 512 and from 1024 measured, between them interpolated by log2 d).
// Plus mapping the pages of A, B and C (fault_us_per_mib), which one process does serially.
double predict_in_process(const ProductShape& p, std::size_t threads, const Calibration& c);

// Seconds with `workers` workers of `threads` threads each: launching and joining them, the
// largest block's product (at the rate above for its shape, slowed by process_scaling when
// several processes run at once), mapping its rows of A and C and all of B (the workers in
// parallel), and for the shm backing copying A and B in and C out. A fork also copies the
// forking process's page tables (`page_tables_kib` of them) into each worker.
double predict_workers(const ProductShape& p, std::size_t workers, std::size_t threads,
                       Launch launch, Backing backing, const Calibration& c,
                       double page_tables_kib = 0);
// OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, when set to a whole number above 0: the most
// OpenBLAS threads a plan gives a process unless Options::threads_per_worker says otherwise.
// 0 when neither is set.
std::size_t blas_thread_limit();
// `threads` within blas_thread_limit(), when one is set.
std::size_t within_thread_limit(std::size_t threads);
// Seconds to launch and join `workers` workers: the calibrated base and per-worker costs, and
// for fork the copy of the forking process's page tables (`page_tables_kib`) into each.
double launch_seconds(Launch launch, std::size_t workers, const Calibration& c,
                      double page_tables_kib);
// The size of this process's page tables (VmPTE), in KiB; 0 if unknown.
double page_tables_kib();

// True when, by the built-in figures, the whole product in process takes less than launching
// one worker: no calibration can make workers pay, and the plan need not read the cache.
bool too_small_for_workers(const ProductShape& p, std::size_t cores);

// Workers must beat in process by this factor to be chosen: starting processes must pay.
inline constexpr double kWorkersMargin = 0.97;

// The plan for `p`. Options fixed by the caller are kept: in_process, workers (> 0), threads.
// With workers == 0 the cost model weighs in process against 1..min(cores, m) workers with
// cores / workers threads each, and takes the fastest prediction (workers only when they beat
// in process by kWorkersMargin). In process, at most `host_threads` threads (the host's
// OpenBLAS count; 0: no limit).
Plan make_plan(const ProductShape& p, const Options& options, std::size_t cores,
               const Calibration& c, std::size_t host_threads = 0);

}  // namespace shmgemm::detail
