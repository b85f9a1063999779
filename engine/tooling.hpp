// For shmgemm's own tools (calibrate, bench, explain), not the public API: the cost model's
// machine figures, their cache, launch-cost probes and the explanation of a plan. Linked from
// the internal library (shmgemm_internal); libshmgemm does not export them.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm {

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
  // ... plus this per KiB of the forking process's page tables, per worker: fork copies them
  // (a Python process holding many arrays of 4 KiB pages has megabytes of them).
  double fork_us_per_pte_kib = 9;
  double spawn_base_us = 1500;  // the same, starting shmgemm-worker executables
  double spawn_per_worker_us = 1500;
  double fault_us_per_mib = 60;  // mapping one MiB of shared pages into one more process
  double copy_gbs = 6;           // memcpy bandwidth, for the shm backing's copies
  // Where OpenBLAS falls back on this CPU (blas_kernel()), a host that keeps its fallback
  // kernels (Prescott) computes in process at this fraction of the workers' one-thread dgemm
  // rate. Measured on every machine, by a child that switches to them.
  double fallback_rate = 0.2;
  // This process's in-process rate relative to its workers': fallback_rate where it runs
  // OpenBLAS's fallback and its workers do not, else 1. Set for each plan, not cached.
  double in_process_rate = 1;
  unsigned cores = 0;  // the cores when measured; 0 for the defaults
  std::string source = "built-in defaults";
};

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

// "in process x 2 threads", "2 workers x 1 thread".
std::string to_string(const PlanCandidate& candidate);
// The report as JSON: to_json(report)'s object, for a tool that adds keys of its own.
nlohmann::json report_json(const Report& report);
// The plan of a run and why it was chosen, a few lines ending in a newline.
std::string explain(const Report& report);

}  // namespace shmgemm
