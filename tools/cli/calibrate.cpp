// `shmgemm calibrate`: measure the figures behind the automatic plan and cache them.
#include <fmt/format.h>

#include "engine/tooling.hpp"
#include "tools/cli/commands.hpp"

namespace shmgemm::cli {
namespace {

int run_calibrate(bool show, bool json) {
  Calibration c = show ? load_calibration() : measure_calibration();
  if (!show) {
    save_calibration(c);
    c.source = calibration_path().string();
  }
  if (json) {
    fmt::print("{}\n", calibration_json(c));
    return 0;
  }
  fmt::print("calibration ({}{})\n", show ? "" : "saved to ", c.source);
  fmt::print("  dgemm, one thread:          {:.1f} GFLOP/s\n", c.gflops_f64);
  fmt::print("  sgemm, one thread:          {:.1f} GFLOP/s\n", c.gflops_f32);
  fmt::print("  threads in one process:     {:.2f} of {} x one thread (1024^3), {:.2f} (512^3)\n",
             c.thread_scaling, c.cores, c.thread_scaling_512);
  const char* classes[3] = {"k long (64x131072x64)", "m long (131072x64x64)",
                            "n long (64x64x131072)"};
  for (int i = 0; i < 3; ++i)
    fmt::print("  skinny, {}: {:.2f} of the square rate, threads {:.2f}\n", classes[i],
               c.skinny_rate[i], c.skinny_scaling[i]);
  fmt::print("  one-thread processes:       {:.2f} of {} x one thread\n", c.process_scaling,
             c.cores);
  fmt::print("  half-rate dimension:        {:.0f}\n", c.half_rate_dim);
  fmt::print("  fork + join:                {:.0f} us + {:.0f} us per worker\n", c.fork_base_us,
             c.fork_per_worker_us);
  fmt::print("  fork's page-table copy:     {:.1f} us per KiB of page tables, per worker\n",
             c.fork_us_per_pte_kib);
  fmt::print("  spawn + join:               {:.0f} us + {:.0f} us per worker\n", c.spawn_base_us,
             c.spawn_per_worker_us);
  fmt::print("  mapping shared pages:       {:.0f} us per MiB\n", c.fault_us_per_mib);
  fmt::print("  memcpy:                     {:.1f} GB/s\n", c.copy_gbs);
  fmt::print("  OpenBLAS's fallback kernels: {:.2f} of this rate (for a host that runs them)\n",
             c.fallback_rate);
  return 0;
}

}  // namespace

void add_calibrate(CLI::App& app, Action& action) {
  struct Args {
    bool show = false, json = false;
  };
  const auto [cmd, args] = add_command<Args>(
      app, action, "calibrate", "measure this machine for the automatic plan (a few seconds)",
      [](const Args& a) { return run_calibrate(a.show, a.json); });
  cmd->footer(
      "Measure this machine's GEMM rates, launch costs, page-mapping cost and memory bandwidth "
      "(a few seconds, every core), and cache them for the automatic plan (--workers auto).");
  cmd->add_flag("--show", args->show,
                "print the figures in use (cached or built-in), measure nothing");
  cmd->add_flag("--json", args->json, "print the figures as one JSON object");
}

}  // namespace shmgemm::cli
