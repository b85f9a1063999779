// `shmgemm footprint`: the memory the same product takes under each mode, measured from outside
// while it runs, against the floor |A| + |B| + |C|.
#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

constexpr double kMiB = 1 << 20;

struct FootprintArgs {
  std::string shape = "4000";
  std::string workers;  // default 1..cores
  std::string modes = "shm,file,copy,threads";
  std::string dtype = "float64";
  double interval_ms = 5;
  std::string csv, plot;
  bool json = false;
};

struct Row {
  std::string mode;
  unsigned workers = 0;
  double floor_mib = 0, peak_pss_mib = 0, peak_worker_uss_mib = 0, seconds = 0;
};

// The `shmgemm multiply` arguments of a mode.
std::vector<std::string> mode_args(const std::string& mode, unsigned workers) {
  const std::string w = std::to_string(workers);
  if (mode == "shm")
    return {"--workers", w, "--threads", "1", "--launch", "fork", "--backing", "shm"};
  if (mode == "file")
    return {"--workers", w, "--threads", "1", "--launch", "spawn", "--backing", "file"};
  if (mode == "copy")
    return {"--workers", w,           "--threads", "1",        "--launch",
            "fork",      "--backing", "file",      "--inputs", "copy"};
  if (mode == "threads") return {"--in-process", "--threads", w};
  throw Error::bad_option(
      "--modes", fmt::format("--modes: unknown mode '{}' (shm, file, copy, threads)", mode));
}

void write_plot(const std::string& csv, const std::string& out) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    throw Error(ErrorCode::resource,
                "--plot: gnuplot is not installed (tools/install-deps.sh "
                "gnuplot-nox installs it)");
  const std::string terminal = out.size() > 4 && out.substr(out.size() - 4) == ".svg"
                                   ? "svg size 800,520 dynamic"
                                   : "png size 800,520";
  const std::string script = fmt::format(R"(set terminal {0}
set output '{1}'
set datafile separator ','
set title 'shmgemm footprint: peak summed PSS of the process tree'
set xlabel 'workers (threads for "threads")'
set xtics 1
set ylabel 'MiB'
set key left top
set grid
set termoption noenhanced
stats '{2}' using 7 every ::1 nooutput
floor = STATS_max
plot for [m in "shm file copy threads"] '{2}' using (strcol(1) eq m ? $2 : NaN):8 every ::1 with linespoints lw 2 title m, floor with lines dt 2 lw 2 title 'floor |A|+|B|+|C|'
)",
                                         terminal, out, csv);
  const std::string gp = csv + ".gp";
  std::ofstream(gp) << script;
  if (std::system(fmt::format("gnuplot '{}'", gp).c_str()) != 0)
    throw Error(ErrorCode::internal, fmt::format("--plot: gnuplot failed on {}", gp));
  fs::remove(gp);
}

int run_footprint(const FootprintArgs& args) {
  const auto [m, k, n] = parse_product_shape(args.shape, "--shape");
  std::vector<unsigned> counts;
  if (args.workers.empty())
    for (unsigned w = 1; w <= available_cores(); ++w)
      counts.push_back(w);
  else
    for (const std::string& w : split_list(args.workers))
      counts.push_back(static_cast<unsigned>(parse_count(w, "--workers")));
  const std::vector<std::string> modes = split_list(args.modes);
  for (const std::string& mode : modes)
    mode_args(mode, 1);  // refuses unknown modes now

  const DType dtype = *dtype_from_name(args.dtype);
  const double item = double(item_size(dtype));
  const double floor = (double(m) * k + double(k) * n + double(m) * n) * item / kMiB;

  const TempDir tmp("shmgemm-footprint");
  const fs::path a = tmp.path() / "A.npy", b = tmp.path() / "B.npy", c = tmp.path() / "C.npy";
  write_random_npy(a, dtype, {m, k}, 1);
  write_random_npy(b, dtype, {k, n}, 2);

  std::vector<Row> rows;
  // Progress on a terminal, as multiply and bench show it.
  const bool progress = ::isatty(2) != 0 && !args.json;
  const std::size_t runs = modes.size() * counts.size();
  for (const std::string& mode : modes)
    for (unsigned w : counts) {
      if (progress)
        fmt::print(stderr, "\rfootprint: {} with {} ({} of {})\x1b[K", mode,
                   detail::count(w, "worker"), rows.size() + 1, runs);
      std::vector<std::string> argv = {self_executable(), "multiply", a.string(),
                                       b.string(),        "-o",       c.string()};
      const std::vector<std::string> extra = mode_args(mode, w);
      argv.insert(argv.end(), extra.begin(), extra.end());
      const Measured run = run_measured(argv, args.interval_ms);
      if (run.status != 0)
        throw Error(ErrorCode::worker_failed,
                    fmt::format("footprint: {} with {} failed: {}", mode, w, run.err));
      Row r;
      r.mode = mode;
      r.workers = w;
      r.floor_mib = floor;
      r.peak_pss_mib = double(run.peak_pss) / kMiB;
      // In "threads" there are no workers: the one process's own pages stand for them.
      r.peak_worker_uss_mib =
          double(mode == "threads" ? run.peak_root_uss : run.peak_child_uss) / kMiB;
      r.seconds = run.wall_seconds;
      rows.push_back(r);
      if (progress && rows.size() == runs) fmt::print(stderr, "\r\x1b[K");
      fs::remove(c);
    }

  const std::string header =
      "mode,workers,m,k,n,dtype,floor_mib,peak_pss_mib,peak_worker_uss_mib,seconds";
  auto csv_line = [&](const Row& r) {
    return fmt::format("{},{},{},{},{},{},{:.1f},{:.1f},{:.1f},{:.3f}", r.mode, r.workers, m, k, n,
                       args.dtype, r.floor_mib, r.peak_pss_mib, r.peak_worker_uss_mib, r.seconds);
  };
  std::string csv_path = args.csv;
  if (csv_path.empty() && !args.plot.empty()) csv_path = (tmp.path() / "footprint.csv").string();
  if (!csv_path.empty()) {
    std::ofstream f(csv_path);
    f << header << '\n';
    for (const Row& r : rows)
      f << csv_line(r) << '\n';
    if (!f) throw Error(ErrorCode::resource, fmt::format("{}: cannot write the CSV", csv_path));
  }
  if (!args.plot.empty()) write_plot(csv_path, args.plot);

  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows)
      out.push_back({{"mode", r.mode},
                     {"workers", r.workers},
                     {"m", m},
                     {"k", k},
                     {"n", n},
                     {"dtype", args.dtype},
                     {"floor_mib", r.floor_mib},
                     {"peak_pss_mib", r.peak_pss_mib},
                     {"peak_worker_uss_mib", r.peak_worker_uss_mib},
                     {"seconds", r.seconds}});
    fmt::print("{}\n", out.dump(1));
    return 0;
  }
  fmt::print(
      "{}x{}x{} {}; floor |A|+|B|+|C| = {:.1f} MiB; peak PSS summed over the process tree, "
      "sampled every {} ms\n\n",
      m, k, n, args.dtype, floor, args.interval_ms);
  fmt::print(
      "| mode | workers | peak PSS MiB | over the floor MiB | peak worker USS MiB | seconds "
      "|\n|---|---|---|---|---|---|\n");
  for (const Row& r : rows)
    fmt::print("| {} | {} | {:.1f} | {:+.1f} | {:.1f} | {:.3f} |\n", r.mode, r.workers,
               r.peak_pss_mib, r.peak_pss_mib - r.floor_mib, r.peak_worker_uss_mib, r.seconds);
  return 0;
}

}  // namespace

void add_footprint(CLI::App& app, Action& action) {
  const auto [cmd, args] = add_command<FootprintArgs>(
      app, action, "footprint",
      "the memory of each mode's process tree against the operands' floor", run_footprint);
  cmd->footer(
      "Run the same product under each mode and measure every process of the tree while it "
      "runs (RSS, PSS, USS from /proc/PID/smaps_rollup, sampled by this process, which is not "
      "part of the tree): shm (fork, named segments), file (spawn, mapped .npy files), copy "
      "(each worker copies B and its rows of A, as joblib does), threads (one process, "
      "OpenBLAS threads).");
  cmd->add_option("--shape", args->shape, "MxKxN, or N for square")->capture_default_str();
  cmd->add_option("--workers", args->workers, "comma-separated counts (default: 1..cores)");
  cmd->add_option("--modes", args->modes, "comma-separated: shm, file, copy, threads")
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float64 or float32")
      ->transform(dtype_choice({"float64", "float32"}))
      ->capture_default_str();
  cmd->add_option("--interval-ms", args->interval_ms, "sampling interval")
      ->check(CLI::Range(1.0, 1000.0))
      ->capture_default_str();
  cmd->add_option("--csv", args->csv,
                  "write the results as CSV (mode,workers,m,k,n,dtype,"
                  "floor_mib,peak_pss_mib,peak_worker_uss_mib,seconds)");
  cmd->add_option("--plot", args->plot,
                  "draw peak PSS against workers per mode (FILE.png or "
                  "FILE.svg, with gnuplot)");
  cmd->add_flag("--json", args->json, "print the results as JSON");
}

}  // namespace shmgemm::cli
