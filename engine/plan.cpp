#include "engine/plan.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

namespace shmgemm::detail {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double rate(const ProductShape& p, std::size_t threads, const Calibration& c) {
  const double one = (p.dtype == DType::float32 ? c.gflops_f32 : c.gflops_f64) * 1e9;
  const double t = static_cast<double>(std::max<std::size_t>(threads, 1));
  return one * t * (threads > 1 ? c.thread_scaling : 1.0);
}

double efficiency(double m, double n, double k, const Calibration& c) {
  const double s = std::cbrt(m * n * k);
  return s / (s + c.half_rate_size);
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

namespace {

void split_rows(Plan& plan, const ProductShape& p, std::size_t workers) {
  const RowSplit split = plan_row_split(p.m, workers, cache_line_rows(p.n, item_size(p.dtype)));
  plan.workers = split.workers;
  plan.block_factor = split.block_factor;
  plan.rows.clear();
  for (std::size_t i = 0; i < plan.workers; ++i)
    plan.rows.push_back(partition_rows(p.m, plan.workers, i, plan.block_factor));
}

}  // namespace

double predict_in_process(const ProductShape& p, std::size_t threads, const Calibration& c) {
  const double m = double(p.m), n = double(p.n), k = double(p.k);
  return 2.0 * m * n * k / (rate(p, threads, c) * efficiency(m, n, k, c));
}

double predict_workers(const ProductShape& p, std::size_t workers, std::size_t threads,
                       Launch launch, Backing backing, const Calibration& c) {
  const double w = double(std::max<std::size_t>(workers, 1));
  const double n = double(p.n), k = double(p.k);
  const double rows = std::ceil(double(p.m) / w);  // the largest block decides
  const double item = double(item_size(p.dtype));
  const double launch_us = launch == Launch::fork ? c.fork_base_us + c.fork_per_worker_us * w
                                                  : c.spawn_base_us + c.spawn_per_worker_us * w;
  const double compute = 2.0 * rows * n * k / (rate(p, threads, c) * efficiency(rows, n, k, c));
  const double b_mib = k * n * item / kMiB;
  const double map_b = (w - 1.0) * b_mib * c.fault_us_per_mib * 1e-6;
  const double copies =
      backing == Backing::shm
          ? (double(p.m) * k + k * n + 2.0 * double(p.m) * n) * item / (c.copy_gbs * 1e9)
          : 0.0;
  return launch_us * 1e-6 + compute + map_b + copies;
}

Plan make_plan(const ProductShape& p, const Options& o, std::size_t cores, const Calibration& c) {
  cores = std::max<std::size_t>(cores, 1);
  Plan plan;
  if (o.in_process) {
    plan.in_process = true;
    plan.threads_per_worker = o.threads_per_worker ? o.threads_per_worker : cores;
    plan.reason = "in process, as asked";
    return plan;
  }
  auto threads_for = [&](std::size_t workers) {
    return o.threads_per_worker ? std::size_t{o.threads_per_worker}
                                : std::max<std::size_t>(1, cores / workers);
  };
  if (o.workers > 0) {
    split_rows(plan, p, o.workers);
    plan.threads_per_worker = threads_for(std::max<std::size_t>(plan.workers, 1));
    plan.reason = fmt::format("{} workers, as asked", o.workers);
    return plan;
  }

  // The automatic plan: weigh in process against each worker count.
  plan.automatic = true;
  const std::size_t in_threads = o.threads_per_worker ? o.threads_per_worker : cores;
  const PlanCandidate in{0, static_cast<unsigned>(in_threads),
                         predict_in_process(p, in_threads, c)};
  plan.candidates.push_back(in);
  PlanCandidate best_workers{0, 0, 0};
  for (std::size_t w = 1; w <= std::min<std::uint64_t>(cores, p.m); ++w) {
    const std::size_t t = threads_for(w);
    const PlanCandidate x{static_cast<unsigned>(w), static_cast<unsigned>(t),
                          predict_workers(p, w, t, o.launch, o.backing, c)};
    plan.candidates.push_back(x);
    if (best_workers.workers == 0 || x.predicted_seconds < best_workers.predicted_seconds)
      best_workers = x;
  }
  if (best_workers.workers > 0 &&
      best_workers.predicted_seconds < kWorkersMargin * in.predicted_seconds) {
    split_rows(plan, p, best_workers.workers);
    plan.threads_per_worker = best_workers.threads;
    plan.reason = fmt::format("{} predicted {} against {} for {}", describe(best_workers),
                              duration_string(best_workers.predicted_seconds),
                              duration_string(in.predicted_seconds), describe(in));
  } else {
    plan.in_process = true;
    plan.threads_per_worker = in.threads;
    plan.reason = best_workers.workers == 0
                      ? fmt::format("{}: nothing to split", describe(in))
                      : fmt::format("{} predicted {}; the best with workers, {}, {}", describe(in),
                                    duration_string(in.predicted_seconds), describe(best_workers),
                                    duration_string(best_workers.predicted_seconds));
  }
  return plan;
}

}  // namespace shmgemm::detail

namespace shmgemm {
std::string to_string(const PlanCandidate& c) {
  return detail::describe(c);
}
}  // namespace shmgemm
