#include "engine/plan.hpp"

#include "common/job.hpp"
#include "common/pool_protocol.hpp"
#include "worker/slice_kernel.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>

namespace shmgemm::detail {

Options all_options(const WorkerOptions& o) {
  Options all;
  all.workers = o.workers;
  all.threads_per_worker = o.threads;
  all.launch = o.launch;
  all.timeout = o.timeout;
  return all;
}

Options all_options(const CallOptions& o) {
  Options all = all_options(static_cast<const WorkerOptions&>(o));
  all.in_process = o.in_process;
  all.progress = o.progress;
  all.stop = o.stop;
  return all;
}

Options all_options(const MatmulOptions& o) {
  Options all = all_options(static_cast<const CallOptions&>(o));
  all.copy_inputs = o.copy_inputs;
  all.retries = o.retries;
  all.on_stall = o.on_stall;
  all.on_retry = o.on_retry;
  return all;
}

Options all_options(const FileOptions& o) {
  Options all = all_options(static_cast<const MatmulOptions&>(o));
  all.backing = o.backing;
  all.rows_per_step = o.rows_per_step;
  all.memory = o.memory;
  all.fsync = o.fsync;
  return all;
}

Options all_options(const PoolOptions& o) {
  Options all = all_options(static_cast<const WorkerOptions&>(o));
  all.pool_bytes = o.arena_bytes;
  return all;
}

void check_options(const Options& o, Entry entry) {
  auto refuse = [](std::string_view field, std::string_view why) {
    const std::string option = fmt::format("Options::{}", field);
    throw Error::bad_option(option, fmt::format("{}: {}", option, why));
  };
  const std::size_t max_workers = entry == Entry::pool ? kPoolMaxWorkers : kMaxWorkers;
  if (o.workers > max_workers)
    refuse("workers", fmt::format("{}: at most {}{}", o.workers, max_workers,
                                  entry == Entry::pool ? " in a Pool" : ""));
  if (o.threads_per_worker > unsigned(blas_max_threads()))
    refuse("threads",
           fmt::format("{}: at most {}, the most OpenBLAS runs in one process (its MAX_THREADS)",
                       o.threads_per_worker, blas_max_threads()));
  if (o.retries > 100) refuse("retries", fmt::format("{}: at most 100", o.retries));
  if (!(o.timeout >= 0))  // NaN too
    refuse("timeout", fmt::format("{}: not a number of seconds of at least 0 (0 or infinity: no "
                                  "limit)",
                                  o.timeout));
  if (entry != Entry::pool && o.pool_bytes != 0) refuse("pool_bytes", "applies to a Pool only");
  if (entry == Entry::matmul && o.rows_per_step != 0)
    refuse("rows_per_step",
           "applies to mapped files only (multiply_npy): streaming releases the pages of A and C "
           "that are done, and the host's memory is not the engine's to release");
  if (entry == Entry::files && o.rows_per_step != 0 && o.backing == Backing::shm)
    refuse("rows_per_step",
           "streaming needs Options::backing file (shared memory segments live in memory)");
  if (entry != Entry::files && o.memory != 0)
    refuse("memory", "applies to mapped files only (multiply_npy)");
  if (entry == Entry::files && o.memory != 0 && o.backing == Backing::shm)
    refuse("memory",
           "out of core needs Options::backing file (shared memory segments live in memory)");
  if (entry == Entry::pool) {
    if (o.rows_per_step != 0) refuse("rows_per_step", "applies to mapped files only");
    if (o.copy_inputs)
      refuse("copy_inputs", "does not apply to a Pool (its workers read the arena)");
    if (o.in_process) refuse("in_process", "does not apply to a Pool (it has workers)");
    if (o.retries != 0)
      refuse("retries", "does not apply to a Pool (a dead worker is replaced, its job fails)");
  }
}
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A product is skinny when its longest dimension is at least 8 times its shortest and the
// shortest is at most 256: then its class (0: k long, 1: m long, 2: n long), else -1.
int skinny_class(double m, double k, double n) {
  const double lo = std::min({m, k, n}), hi = std::max({m, k, n});
  if (lo > 256 || hi < 8 * lo) return -1;
  return hi == k ? 0 : hi == m ? 1 : 2;
}

// One process's rate on an m x k x n product with `threads` BLAS threads. Skinny products use
// their class's measured one-thread rate and thread scaling; others the square rate, times
// d / (d + h) for the smallest dimension d, and the square thread scaling.
double process_rate(const ProductShape& p, double m, std::size_t threads, const Calibration& c) {
  const double one = (p.dtype == DType::float32 ? c.gflops_f32 : c.gflops_f64) * 1e9;
  const double k = double(p.k), n = double(p.n);
  const double t = double(std::max<std::size_t>(threads, 1));
  const int skinny = skinny_class(m, k, n);
  if (skinny >= 0)
    return one * c.skinny_rate[skinny] * t * (threads > 1 ? c.skinny_scaling[skinny] : 1.0);
  // Thread scaling: thread_scaling_512 up to d = 512, thread_scaling from 1024, by log2(d).
  const double d = std::min({m, k, n});
  const double x = std::clamp(std::log2(std::max(d, 1.0)) - 9.0, 0.0, 1.0);
  const double scaling = c.thread_scaling_512 + x * (c.thread_scaling - c.thread_scaling_512);
  return one * d / (d + c.half_rate_dim) * t * (threads > 1 ? scaling : 1.0);
}

}  // namespace

std::string count(unsigned n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string describe(const PlanCandidate& x) {
  return x.workers == 0
             ? fmt::format("in process x {}", count(x.threads, "thread"))
             : fmt::format("{} x {}", count(x.workers, "worker"), count(x.threads, "thread"));
}

std::string duration_string(double seconds) {
  if (seconds < 1e-3) return fmt::format("{:.3g} us", seconds * 1e6);
  if (seconds < 1.0) return fmt::format("{:.3g} ms", seconds * 1e3);
  return fmt::format("{:.3g} s", seconds);
}

WorkSplit split_work(const ProductShape& p, std::span<const unsigned> weights,
                     std::size_t kernel_rows) {
  WorkSplit split;
  const std::size_t parts = weights.size();
  const std::uint64_t batch = std::max<std::uint64_t>(p.batch, 1);
  const std::uint64_t product_rows = p.m / batch;
  if (batch > 1 && batch >= parts && product_rows > 0)
    split.block_factor = product_rows;
  else
    split.block_factor =
        plan_row_split(
            p.m, parts,
            std::lcm(cache_line_rows(p.n, p.c_item ? p.c_item : item_size(p.dtype)), kernel_rows))
            .block_factor;
  const bool equal =
      std::all_of(weights.begin(), weights.end(), [&](unsigned w) { return w == weights.front(); });
  for (std::size_t i = 0; i < parts; ++i)
    split.rows.push_back(equal ? partition_rows(p.m, parts, i, split.block_factor)
                               : partition_rows_weighted(p.m, weights, i, split.block_factor));
  return split;
}

std::vector<std::vector<ProductPiece>> split_products(std::span<const double> flops,
                                                      std::span<const std::uint64_t> rows,
                                                      std::size_t parts) {
  parts = std::max<std::size_t>(parts, 1);
  double total = 0;
  for (double f : flops)
    total += f;
  const double fair = total / static_cast<double>(parts);
  std::vector<ProductPiece> pieces;
  for (std::size_t i = 0; i < flops.size(); ++i) {
    const std::uint64_t r = rows[i];
    std::size_t cuts = 1;
    if (r >= 2 && flops[i] > fair && fair > 0)
      cuts = static_cast<std::size_t>(std::min<double>(
          {std::ceil(flops[i] / fair), static_cast<double>(parts), static_cast<double>(r)}));
    for (std::size_t c = 0; c < cuts; ++c) {
      const RowRange range = partition_rows(static_cast<std::size_t>(r), cuts, c, 1);
      pieces.push_back(
          {i, range, cuts == 1 ? flops[i] : flops[i] * double(range.size()) / double(r)});
    }
  }
  std::stable_sort(pieces.begin(), pieces.end(),
                   [](const ProductPiece& x, const ProductPiece& y) { return x.flops > y.flops; });
  std::vector<std::vector<ProductPiece>> dealt(parts);
  std::vector<double> load(parts, 0);
  for (const ProductPiece& piece : pieces) {
    const auto p =
        static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    dealt[p].push_back(piece);
    load[p] += piece.flops;
  }
  return dealt;
}

WorkSplit split_work(const ProductShape& p, std::size_t parts) {
  const std::vector<unsigned> equal(std::min<std::uint64_t>(parts, std::max<std::uint64_t>(p.m, 1)),
                                    1);
  return split_work(p, equal);
}

namespace {

void assign_rows(Plan& plan, const ProductShape& p, std::size_t workers) {
  WorkSplit split = split_work(p, workers);
  plan.workers = split.rows.size();
  plan.block_factor = split.block_factor;
  plan.rows = std::move(split.rows);
}

}  // namespace

Plan pool_plan(const ProductShape& p, std::size_t workers, std::size_t threads) {
  constexpr double kSplitFlops = 1e7;
  const double flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
  Plan plan;
  assign_rows(plan, p, flops < kSplitFlops ? 1 : workers);
  plan.threads_per_worker = threads;
  plan.reason = "the pool's workers";
  return plan;
}

Plan plan_set(const SetShape& s, const Options& options, std::size_t cores,
              std::size_t host_threads, bool fork_safe, const SetCostsOf& costs) {
  const std::size_t workers = std::min(options.workers ? options.workers : cores, s.count);
  const bool small_products = s.flops < kWorkerProductFlops * double(s.count);
  const bool fork_unsafe = !options.in_process && workers > 1 && !fork_safe;
  Plan plan;
  plan.in_process =
      options.in_process || workers <= 1 || fork_unsafe || (options.workers == 0 && small_products);
  if (!plan.in_process && options.workers == 0) {
    const SetCosts k = costs(workers);
    const double rate = k.gflops_f64 * 1e9 * 0.6;  // one thread, on products of moderate size
    plan.in_process = s.flops / (rate * double(cores)) < 4 * k.launch_seconds;
  }
  if (!plan.in_process) {
    plan.workers = workers;
    plan.threads_per_worker = 1;
    plan.reason = fmt::format("{} on {} x 1 thread, largest first",
                              count(static_cast<unsigned>(s.count), "product"),
                              count(static_cast<unsigned>(workers), "worker"));
    return plan;
  }
  const std::size_t threads =
      options.threads_per_worker ? options.threads_per_worker : within_thread_limit(cores);
  const std::size_t side = host_threads ? std::min(threads, host_threads) : threads;
  const std::string why = options.in_process ? "as asked"
                          : workers <= 1     ? "one worker would add only its launch"
                          : fork_unsafe      ? "other threads of this process may be inside "
                                               "OpenBLAS, and a fork then is unsafe"
                          : small_products   ? "the products average under 50 MFLOP, which run "
                                               "no faster on workers"
                                             : "launching workers would cost about what the set "
                                               "takes";
  if (side > 1 && s.count > 1 && fork_safe && s.largest * double(side) <= s.flops) {
    plan.side_by_side = side;
    plan.threads_per_worker = 1;
    plan.reason =
        fmt::format("{} in process, side by side on {} x 1 OpenBLAS thread, largest first: {}",
                    count(static_cast<unsigned>(s.count), "product"),
                    count(static_cast<unsigned>(side), "thread"), why);
    return plan;
  }
  plan.threads_per_worker = threads;
  plan.reason = fmt::format("{} in process x {}: {}",
                            count(static_cast<unsigned>(s.count), "product"), threads, why);
  return plan;
}

double map_seconds(double bytes, const Calibration& c) {
  return bytes / kMiB * c.fault_us_per_mib * 1e-6;
}

double predict_in_process(const ProductShape& p, std::size_t threads, const Calibration& c) {
  const double m = double(p.m), n = double(p.n), k = double(p.k);
  const double item = double(item_size(p.dtype));
  // Mapping A, B and C: one process maps them all, in effect one page after another.
  return 2.0 * m * n * k / (process_rate(p, m, threads, c) * c.in_process_rate) +
         map_seconds((m * k + k * n + m * n) * item, c);
}

double page_tables_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with("VmPTE:")) return std::strtod(line.c_str() + 6, nullptr);
  return 0;
}

double launch_seconds(Launch launch, std::size_t workers, const Calibration& c,
                      double page_tables_kib) {
  const double w = double(std::max<std::size_t>(workers, 1));
  const double us =
      launch == Launch::fork
          ? c.fork_base_us + (c.fork_per_worker_us + c.fork_us_per_pte_kib * page_tables_kib) * w
          : c.spawn_base_us + c.spawn_per_worker_us * w;
  return us * 1e-6;
}

double predict_workers(const ProductShape& p, std::size_t workers, std::size_t threads,
                       Launch launch, Backing backing, const Calibration& c,
                       double page_tables_kib) {
  const double w = double(std::max<std::size_t>(workers, 1));
  const double n = double(p.n), k = double(p.k);
  const double rows = std::ceil(double(p.m) / w);  // the largest block decides
  const double item = double(item_size(p.dtype));

  // Several processes at once share the memory system: process_scaling.
  const double together = workers > 1 ? c.process_scaling : 1.0;
  const double compute = 2.0 * rows * n * k / (process_rate(p, rows, threads, c) * together);
  // Each worker maps its rows of A and C and all of B, all workers at once.
  const double map = map_seconds((rows * k + k * n + rows * n) * item, c);
  const double copies =
      backing == Backing::shm
          ? (double(p.m) * k + k * n + 2.0 * double(p.m) * n) * item / (c.copy_gbs * 1e9)
          : 0.0;
  return launch_seconds(launch, workers, c, page_tables_kib) + compute + map + copies;
}

bool too_small_for_workers(const ProductShape& p, std::size_t cores) {
  const Calibration defaults;
  return predict_in_process(p, cores, defaults) <
         (defaults.fork_base_us + defaults.fork_per_worker_us) * 1e-6;
}

std::size_t blas_thread_limit() {
  for (const char* name : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"})
    if (const char* v = std::getenv(name); v && *v) {
      char* end = nullptr;
      const unsigned long n = std::strtoul(v, &end, 10);
      if (*end == '\0' && n > 0) return n;
    }
  return 0;
}

std::size_t within_thread_limit(std::size_t threads) {
  const std::size_t limit = blas_thread_limit();
  return limit > 0 ? std::min(threads, limit) : threads;
}

Plan make_plan(const ProductShape& p, const Options& o, std::size_t cores, const Calibration& c,
               std::size_t host_threads) {
  cores = std::max<std::size_t>(cores, 1);
  // Threads per process when not asked for: at most what the environment allows numpy's BLAS.
  const auto capped = within_thread_limit;
  // In this process: at most the host's count, which is the host's to set.
  auto in_host = [host_threads](std::size_t threads) {
    return host_threads > 0 ? std::min(threads, host_threads) : threads;
  };
  Plan plan;
  if (o.in_process) {
    plan.in_process = true;
    plan.threads_per_worker = in_host(o.threads_per_worker ? o.threads_per_worker : capped(cores));
    plan.reason = "in process, as asked";
    return plan;
  }
  auto threads_for = [&](std::size_t workers) {
    return o.threads_per_worker ? std::size_t{o.threads_per_worker}
                                : capped(std::max<std::size_t>(1, cores / workers));
  };
  if (o.workers > 0) {
    assign_rows(plan, p, o.workers);
    plan.threads_per_worker = threads_for(std::max<std::size_t>(plan.workers, 1));
    plan.reason =
        plan.workers == o.workers
            ? fmt::format("{} workers, as asked", o.workers)
            : fmt::format("{} asked, {}: one per row of C at most", count(o.workers, "worker"),
                          count(static_cast<unsigned>(plan.workers), "worker"));
    return plan;
  }

  // The automatic plan: weigh in process against each worker count.
  plan.automatic = true;
  const std::size_t in_threads =
      in_host(o.threads_per_worker ? o.threads_per_worker : capped(cores));
  const PlanCandidate in{0, static_cast<unsigned>(in_threads),
                         predict_in_process(p, in_threads, c)};
  plan.candidates.push_back(in);
  // Each worker count, with `ptes` KiB of page tables for each fork to copy; the fastest.
  auto weigh = [&](double ptes) {
    std::vector<PlanCandidate> workers;
    PlanCandidate best{0, 0, 0};
    for (std::size_t w = 1; w <= std::min<std::uint64_t>(cores, p.m); ++w) {
      const std::size_t t = threads_for(w);
      const PlanCandidate x{static_cast<unsigned>(w), static_cast<unsigned>(t),
                            predict_workers(p, w, t, o.launch, o.backing, c, ptes)};
      workers.push_back(x);
      if (best.workers == 0 || x.predicted_seconds < best.predicted_seconds) best = x;
    }
    return std::pair{workers, best};
  };
  auto wins = [&](const PlanCandidate& x) {
    return x.workers > 0 && x.predicted_seconds < kWorkersMargin * in.predicted_seconds;
  };
  // Fork's copy of the page tables (VmPTE, read from /proc: tens of us) only adds to the
  // workers' time: it is read only where workers win without it.
  auto [workers, best_workers] = weigh(0);
  if (o.launch == Launch::fork && wins(best_workers))
    std::tie(workers, best_workers) = weigh(page_tables_kib());
  plan.candidates.insert(plan.candidates.end(), workers.begin(), workers.end());
  if (wins(best_workers)) {
    assign_rows(plan, p, best_workers.workers);
    plan.threads_per_worker = best_workers.threads;
    plan.reason = fmt::format("{} predicted {} against {} for {}", describe(best_workers),
                              duration_string(best_workers.predicted_seconds),
                              duration_string(in.predicted_seconds), describe(in));
  } else {
    plan.in_process = true;
    plan.threads_per_worker = in.threads;
    plan.reason =
        best_workers.workers == 0
            ? fmt::format("{}: nothing to split", describe(in))
            : fmt::format(
                  "{} predicted {}; the best with workers, {}, {} (workers are "
                  "chosen only when predicted at least {:.0f}% faster)",
                  describe(in), duration_string(in.predicted_seconds), describe(best_workers),
                  duration_string(best_workers.predicted_seconds), (1 - kWorkersMargin) * 100);
  }
  return plan;
}

}  // namespace shmgemm::detail

namespace shmgemm {

std::string to_string(const PlanCandidate& c) {
  return detail::describe(c);
}

double in_process_flops(DType dtype) {
  const std::size_t cores = available_cores();
  auto tiny = [&](std::uint64_t side) {
    return detail::too_small_for_workers({.m = side, .k = side, .n = side, .dtype = dtype}, cores);
  };
  // The largest side that is too small (the prediction grows with the side).
  std::uint64_t small = 0, large = std::uint64_t{1} << 16;
  while (large - small > 1) {
    const std::uint64_t side = small + (large - small) / 2;
    (tiny(side) ? small : large) = side;
  }
  const double side = double(small);
  return 2 * side * side * side;
}

std::string explain(const Report& r) {
  std::string text = fmt::format("plan: {}\n", r.plan_reason);
  if (!r.automatic) return text;
  text += fmt::format("  calibration: {}\n  predicted:", r.calibration);
  for (const PlanCandidate& c : r.candidates)
    text +=
        fmt::format(" {} {};", detail::describe(c), detail::duration_string(c.predicted_seconds));
  text.back() = '\n';
  return text;
}

}  // namespace shmgemm
