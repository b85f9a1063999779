// `shmgemm bench`: the engine's plans and the peers, side by side in one run, alternating.
#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "common/clock.hpp"
#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"
#include "worker/slice_kernel.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

struct Shape {
  std::uint64_t m, k, n;
  std::string label() const {
    return m == k && k == n ? std::to_string(m) : fmt::format("{}x{}x{}", m, k, n);
  }
};

struct Variant {
  std::string name;  // "auto", "fork 2 workers", "OpenBLAS in process", "numpy", ...
  std::vector<std::string> argv_tail;  // after the program, A, B, C
  bool python = false;                 // a peer script, run with /usr/bin/python3
  bool limit = false;                  // `shmgemm bench --limit`: the product alone, in memory
};

// The row every variant is measured against: OpenBLAS's ?gemm with every core, on operands
// already in memory (filled, so their pages are there), C's pages faulted, OpenBLAS's threads
// started by a small product first; only the product is timed. No file is read or written.
constexpr const char* kLimit = "limit: OpenBLAS gemm in memory";

struct Result {
  std::string shape, variant;
  Shape dims{};
  double seconds = 0, wall = 0, gflops = 0, ratio = 0;
  double vs_limit = 0;  // the limit's seconds over this variant's: 1 is the limit
  std::uint64_t peak_pss = 0;
};

constexpr const char* kPython = "/usr/bin/python3";

bool peers_available() {
  if (::access(kPython, X_OK) != 0) return false;
  return run_measured({kPython, "-c", "import numpy, joblib"}, 0).status == 0;
}

struct BenchArgs {
  std::string shapes = "64,128,256,512,1000,2000,4000,50x100000x60,100000x50x60";
  std::string dtype = "float64";
  int rounds = 5;
  double interval_ms = 5;
  bool no_peers = false;
  bool json = false;
  std::string csv;
  std::string peers_dir;
  std::string limit;  // hidden: time the limit of this MxKxN product and print {"seconds": s}
  bool matmul = false;
  std::string cases;
  bool mpi = false;
  std::uint64_t mpi_size = 4000;
  int ranks = 2;
  std::string hostfile;
  bool out_of_core = false;
  OutOfCoreBenchArgs ooc;
};

// A variant's plan, from its --json ("2 fork x 1", "in process x 2"), to tell noise from a
// real difference between variants that ran the same plan.
std::string plan_of(const Measured& m) {
  try {
    const auto j = nlohmann::json::parse(m.out);
    if (j.at("in_process").get<bool>())
      return fmt::format("in process x {}", j.at("threads_per_worker").get<unsigned>());
    return fmt::format("{} {} x {}", j.at("workers").get<unsigned>(),
                       j.at("launch").get<std::string>(),
                       j.at("threads_per_worker").get<unsigned>());
  } catch (const std::exception&) {
    return {};
  }
}

// The limit's product: operands filled with random values (their pages present), OpenBLAS's
// threads started and C's pages faulted by a smaller product first, then one product timed,
// through the kernel's own OpenBLAS call.
template <class T>
double time_product(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n) {
  std::vector<T> a(m * k), b(k * n), c(m * n, T(0));
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (T& x : a)
    x = T(u(rng));
  for (T& x : b)
    x = T(u(rng));
  const ConstMatrixRef ar{reinterpret_cast<const std::byte*>(a.data()), m, k, k, Layout::row_major};
  const ConstMatrixRef br{reinterpret_cast<const std::byte*>(b.data()), k, n, n, Layout::row_major};
  const MatrixRef cr{reinterpret_cast<std::byte*>(c.data()), m, n, n, Layout::row_major};
  const std::uint64_t w = std::min({m, k, n, std::uint64_t{256}});
  compute_rows(dtype, {ar.data, w, w, k, Layout::row_major}, {br.data, w, w, n, Layout::row_major},
               {cr.data, w, w, n, Layout::row_major}, {0, w});
  const auto start = std::chrono::steady_clock::now();
  compute_rows(dtype, ar, br, cr, {0, m});
  return seconds_since(start);
}

int run_limit(const BenchArgs& args) {
  const auto [m, k, n] = parse_product_shape(args.limit, "--limit");
  set_blas_threads(int(available_cores()));
  const double seconds = m * k * n == 0            ? 0.0
                         : args.dtype == "float32" ? time_product<float>(DType::float32, m, k, n)
                                                   : time_product<double>(DType::float64, m, k, n);
  fmt::print("{}\n", nlohmann::json{{"seconds", seconds}}.dump());
  return 0;
}

int run_bench(const BenchArgs& args) {
  if (!args.limit.empty()) return run_limit(args);
  if (args.mpi)
    return run_mpi_bench(args.mpi_size, args.ranks, args.rounds, args.json, args.hostfile);
  if (args.out_of_core) {
    OutOfCoreBenchArgs ooc = args.ooc;
    ooc.rounds = args.rounds;
    ooc.json = args.json;
    ooc.peers_dir = args.peers_dir;
    return run_out_of_core_bench(ooc);
  }
  if (args.matmul)
    return run_matmul_bench(args.cases, args.rounds, peers_folder(args.peers_dir), args.json);
  std::vector<Shape> shapes;
  for (const std::string& item : split_list(args.shapes)) {
    const auto [m, k, n] = parse_product_shape(item, "--shapes");
    shapes.push_back({m, k, n});
  }
  const DType dtype = *dtype_from_name(args.dtype);
  const unsigned cores = available_cores();
  const std::string self = self_executable();
  const fs::path peers_dir = peers_folder(args.peers_dir);
  // Why peers are left out, if they are.
  std::string no_peers_because;
  if (args.no_peers)
    no_peers_because = "--no-peers";
  else if (!fs::exists(peers_dir / "numpy_matmul.py"))
    no_peers_because = fmt::format("no peer scripts in {}", peers_dir.string());
  else if (!peers_available())
    no_peers_because = "/usr/bin/python3 with numpy and joblib not found";
  const bool peers = no_peers_because.empty();

  // Launch costs first, while this process has run no BLAS.
  const double fork2 = launch_cost_us(Launch::fork, 2, 50);
  const double spawn2 = launch_cost_us(Launch::spawn, 2, 20);

  std::vector<Variant> variants = {{kLimit, {}, false, true},
                                   {"auto", {"--workers", "auto", "--backing", "file"}}};
  for (const char* launch : {"fork", "spawn"})
    for (unsigned w = 1; w <= cores; ++w)
      variants.push_back(
          {fmt::format("{} {}", launch, detail::count(w, "worker")),
           {"--workers", std::to_string(w), "--launch", launch, "--backing", "file"}});
  variants.push_back({"OpenBLAS in process", {"--in-process"}});
  const std::string jobs = std::to_string(cores);
  if (peers) {
    variants.push_back({"numpy A @ B", {(peers_dir / "numpy_matmul.py").string()}, true});
    variants.push_back({"joblib recipe", {(peers_dir / "joblib_recipe.py").string(), jobs}, true});
    variants.push_back(
        {"multiprocessing recipe", {(peers_dir / "mp_recipe.py").string(), jobs}, true});
  }

  const TempDir tmp("shmgemm-bench");
  const fs::path dir = tmp.path();

  std::vector<Result> results;
  // Progress on a terminal; each variant's plans, per shape.
  const bool progress = ::isatty(2) != 0 && !args.json;
  std::map<std::string, std::map<std::string, std::set<std::string>>> plans;
  for (const Shape& s : shapes) {
    const fs::path a = dir / "A.npy", b = dir / "B.npy", c = dir / "C.npy";
    write_random_npy(a, dtype, {s.m, s.k}, 1);
    write_random_npy(b, dtype, {s.k, s.n}, 2);
    std::map<std::string, std::vector<double>> seconds, walls;
    std::map<std::string, std::uint64_t> peak_pss;
    std::map<std::string, std::set<std::string>> plan_seen;
    std::vector<std::size_t> order(variants.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937 shuffle_rng(12345);
    auto argv_of = [&](const Variant& v) {
      std::vector<std::string> argv;
      if (v.limit) {
        argv = {self,      "bench",   "--limit", fmt::format("{}x{}x{}", s.m, s.k, s.n),
                "--dtype", args.dtype};
      } else if (v.python) {
        argv = {kPython, v.argv_tail[0], a.string(), b.string(), c.string()};
        argv.insert(argv.end(), v.argv_tail.begin() + 1, v.argv_tail.end());
      } else {
        argv = {self, "multiply", a.string(), b.string(), "-o", c.string(), "--json"};
        argv.insert(argv.end(), v.argv_tail.begin(), v.argv_tail.end());
      }
      return argv;
    };
    auto run = [&](const Variant& v, double interval_ms) {
      const Measured m = run_measured(argv_of(v), interval_ms);
      if (m.status != 0)
        throw Error(ErrorCode::internal,
                    fmt::format("bench: {} on {} failed: {}", v.name, s.label(), m.err));
      return m;
    };
    // The timed runs are not sampled: reading a process's smaps_rollup walks its page tables,
    // and every 5 ms that slowed a 4000^2 product by a third here.
    for (int round = 0; round < args.rounds; ++round) {
      // A new order every round, so that no variant always follows the same one (a peer's
      // output still being written back, say).
      std::shuffle(order.begin(), order.end(), shuffle_rng);
      if (progress)
        fmt::print(stderr, "\rbench: {} round {} of {}\x1b[K", s.label(), round + 1, args.rounds);
      for (std::size_t index : order) {
        const Variant& v = variants[index];
        const Measured m = run(v, 0);
        seconds[v.name].push_back(reported_number(m, "seconds", v.name));
        if (!v.python && !v.limit) plan_seen[v.name].insert(plan_of(m));
        walls[v.name].push_back(m.wall_seconds);
      }
    }
    // Memory: one more run of each variant, sampled.
    for (const Variant& v : variants)
      peak_pss[v.name] = run(v, args.interval_ms).peak_pss;
    const double flops = 2.0 * double(s.m) * double(s.k) * double(s.n);
    const double openblas = median(seconds["OpenBLAS in process"]);
    const double limit = median(seconds[kLimit]);
    for (const Variant& v : variants) {
      Result r;
      r.shape = s.label();
      r.dims = s;
      r.variant = v.name;
      r.seconds = median(seconds[v.name]);
      r.wall = median(walls[v.name]);
      r.gflops = flops / r.seconds / 1e9;
      r.ratio = openblas / r.seconds;
      r.vs_limit = limit / r.seconds;
      r.peak_pss = peak_pss[v.name];
      results.push_back(r);
    }
    if (!args.json)
      fmt::print(stderr, "{}bench: {} done ({} variants x {} rounds)\n", progress ? "\r" : "",
                 s.label(), variants.size(), args.rounds);
    for (const auto& [name, set] : plan_seen)
      plans[s.label()][name] = set;
  }

  // The targets' checks: auto against the faster of in process and the best fixed count.
  nlohmann::json checks = nlohmann::json::array();
  for (const Shape& s : shapes) {
    double auto_s = 0, in_s = 0, best_fixed = 1e300;
    std::string best_name;
    for (const Result& r : results) {
      if (r.shape != s.label()) continue;
      if (r.variant == "auto") auto_s = r.seconds;
      if (r.variant == "OpenBLAS in process") in_s = r.seconds;
      if ((r.variant.rfind("fork ", 0) == 0 || r.variant.rfind("spawn ", 0) == 0) &&
          r.seconds < best_fixed) {
        best_fixed = r.seconds;
        best_name = r.variant;
      }
    }
    const double best = std::min(in_s, best_fixed);
    const std::string alternative = in_s <= best_fixed ? "OpenBLAS in process" : best_name;
    // The same plan on both sides: whatever their ratio, it is the machine's noise.
    const auto& p = plans[s.label()];
    const bool same_plan = p.count("auto") && p.count(alternative) && p.at("auto").size() == 1 &&
                           p.at("auto") == p.at(alternative);
    checks.push_back({{"shape", s.label()},
                      {"same_plan", same_plan},
                      {"auto_seconds", auto_s},
                      {"best_alternative", alternative},
                      {"best_seconds", best},
                      {"auto_over_best", auto_s / best}});
  }

  if (!args.csv.empty()) {
    std::ofstream f(args.csv);
    f << "shape,m,k,n,dtype,variant,seconds,gflops,ratio_vs_openblas,wall_seconds,peak_pss_mib,"
         "vs_limit\n";
    for (const Result& r : results)
      f << fmt::format("{},{},{},{},{},{},{:.6f},{:.3f},{:.4f},{:.6f},{:.1f},{:.4f}\n", r.shape,
                       r.dims.m, r.dims.k, r.dims.n, args.dtype, r.variant, r.seconds, r.gflops,
                       r.ratio, r.wall, double(r.peak_pss) / (1 << 20), r.vs_limit);
    if (!f) throw Error(ErrorCode::resource, fmt::format("{}: cannot write the CSV", args.csv));
  }

  if (args.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const Result& r : results)
      rows.push_back({{"shape", r.shape},
                      {"m", r.dims.m},
                      {"k", r.dims.k},
                      {"n", r.dims.n},
                      {"variant", r.variant},
                      {"seconds", r.seconds},
                      {"gflops", r.gflops},
                      {"ratio_vs_openblas", r.ratio},
                      {"vs_limit", r.vs_limit},
                      {"wall_seconds", r.wall},
                      {"peak_pss_mib", double(r.peak_pss) / (1 << 20)}});
    fmt::print("{}\n", nlohmann::json{{"dtype", args.dtype},
                                      {"cores", cores},
                                      {"rounds", args.rounds},
                                      {"peers", peers},
                                      {"launch_fork_2_workers_us", fork2},
                                      {"launch_spawn_2_workers_us", spawn2},
                                      {"results", rows},
                                      {"auto_checks", checks}}
                           .dump(1));
    return 0;
  }

  fmt::print(
      "{} products, {} cores, median of {} alternating runs; seconds: the whole job "
      "(read A and B, multiply, write C); vs OpenBLAS: throughput against one process "
      "with every core; vs limit: against the first row, OpenBLAS's product alone on operands "
      "in memory (1 is the limit); wall: the whole process; peak PSS: summed over the process "
      "tree, in one more run of each variant, sampled every {} ms (the timed runs are not "
      "sampled)\n\n",
      args.dtype, cores, args.rounds, args.interval_ms);
  if (!peers) fmt::print("(peers skipped: {})\n\n", no_peers_because);
  fmt::print(
      "| shape | variant | seconds | GFLOP/s | vs OpenBLAS | vs limit | wall s | peak PSS MiB |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  // A process that ends before the first sample shows "-": too short to measure.
  for (const Result& r : results)
    fmt::print("| {} | {} | {:.4f} | {:.1f} | {:.2f} | {:.2f} | {:.4f} | {} |\n", r.shape,
               r.variant, r.seconds, r.gflops, r.ratio, r.vs_limit, r.wall,
               r.peak_pss ? fmt::format("{:.0f}", double(r.peak_pss) / (1 << 20)) : "-");
  fmt::print("\nauto against the faster of in process and the best fixed worker count:\n");
  for (const auto& c : checks)
    fmt::print("  {}: auto {:.4f} s, best {} {:.4f} s, ratio {:.3f}{}\n",
               c["shape"].get<std::string>(), c["auto_seconds"].get<double>(),
               c["best_alternative"].get<std::string>(), c["best_seconds"].get<double>(),
               c["auto_over_best"].get<double>(),
               c["same_plan"].get<bool>() ? " (the same plan: the difference is noise)" : "");
  fmt::print("\nlaunch and join 2 workers on an empty block: fork {:.0f} us, spawn {:.0f} us\n",
             fork2, spawn2);
  return 0;
}

}  // namespace

void add_bench(CLI::App& app, Action& action) {
  const auto [cmd, args] = add_command<BenchArgs>(
      app, action, "bench", "the engine's plans, OpenBLAS and the peers side by side, alternating",
      run_bench);
  cmd->footer(
      "Benchmark side by side in one run, alternating between variants in a new shuffled order "
      "every round, reporting medians: the "
      "automatic plan, every fixed worker count with fork and with spawn, single-process "
      "OpenBLAS with every core, the limit (OpenBLAS's product alone on operands in memory, "
      "every core), and (when /usr/bin/python3 has numpy and joblib) numpy's "
      "A @ B and the joblib row-block and multiprocessing recipes.");
  cmd->add_option("--shapes", args->shapes, "comma-separated N (square) or MxKxN")
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float64 or float32")
      ->transform(dtype_choice({"float64", "float32"}))
      ->capture_default_str();
  cmd->add_option("--rounds", args->rounds, "runs of each variant (the median is reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--interval-ms", args->interval_ms,
                  "memory sampling interval, in one more run of each variant after the timed ones")
      ->check(CLI::Range(1.0, 1000.0))
      ->capture_default_str();
  cmd->add_flag("--no-peers", args->no_peers, "skip numpy, joblib and multiprocessing");
  cmd->add_option("--peers-dir", args->peers_dir,
                  "where the peer scripts are (default: PREFIX/share/shmgemm/peers beside an "
                  "installed program, else the source tree's tools/bench/peers)")
      ->option_text("DIR");
  cmd->add_flag("--matmul", args->matmul,
                "instead: np.matmul's cases against numpy (exact int64 and int32 products, "
                "with small and full-range values; 2000 products with A broadcast; 981 small "
                "products), with the answers compared");
  cmd->add_option("--cases", args->cases,
                  "with --matmul: some of int64-small, int64, int32-small, int32, batch, small "
                  "(default: all)");
  cmd->add_flag("--mpi", args->mpi,
                "instead: shmgemm-mpi (nodes by host, and --one-rank-per-node) against "
                "ScaLAPACK's pdgemm and the single-machine engine on one square float64 "
                "product: job seconds, GFLOP/s, peak PSS, bytes between nodes");
  cmd->add_option("--size", args->mpi_size, "with --mpi: N of the N x N matrices")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--ranks", args->ranks, "with --mpi: MPI ranks")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--hostfile", args->hostfile,
                  "with --mpi: mpirun's hostfile, the ranks placed on its nodes (Open MPI's "
                  "settings for them from the environment, as a user sets them)")
      ->check(CLI::ExistingFile)
      ->option_text("FILE");
  cmd->add_flag("--out-of-core", args->out_of_core,
                "instead: one float64 product larger than a memory cgroup (root), shmgemm "
                "against dask.array over the memory-mapped files and a numpy loop over slabs of "
                "k, each run in the cgroup with A and B dropped from the page cache first: "
                "seconds, the cgroup's peak, the disk's time for what shmgemm reads");
  cmd->add_option("--out-of-core-shape", args->ooc.shape,
                  "with --out-of-core: MxKxN of the product")
      ->capture_default_str();
  cmd->add_option("--cgroup-memory", args->ooc.limit,
                  "with --out-of-core: the memory cgroup's limit (512M, 2G...)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("512M");
  cmd->add_option("--dir", args->ooc.dir,
                  "with --out-of-core: where the operands are written (a disk, not memory)")
      ->capture_default_str();
  cmd->add_option("--peer-timeout", args->ooc.peer_timeout,
                  "with --out-of-core: seconds after which a run is stopped and reported as not "
                  "finished")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print the results as one JSON object");
  // How bench measures its limit row, in a process of its own: not for users.
  cmd->add_option("--limit", args->limit)->group("");
  cmd->add_option("--csv", args->csv, "also write the results to this CSV file");
}

}  // namespace shmgemm::cli
