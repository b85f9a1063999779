// `shmgemm demo`: the main job on an embedded default, start to finish.
#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/npy_file.hpp"
#include "engine/interrupt.hpp"
#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

// Largest |x - y| over both results, and the largest |y|.
std::pair<double, double> compare(const NpyMapping& x, const NpyMapping& y) {
  const auto* px = reinterpret_cast<const double*>(x.data());
  const auto* py = reinterpret_cast<const double*>(y.data());
  double diff = 0, scale = 0;
  for (std::uint64_t i = 0; i < x.header().element_count; ++i) {
    diff = std::max(diff, std::abs(px[i] - py[i]));
    scale = std::max(scale, std::abs(py[i]));
  }
  return {diff, scale};
}

// Where shmgemm wins: an int64 product, exact, against numpy's `a @ b` (numpy has no BLAS for
// integers: a naive loop). Skipped, saying why, without python3 and numpy.
int show_a_win(const fs::path& dir, const FileOptions& engine) {
  constexpr std::uint64_t kSide = 600;
  const fs::path a = dir / "I.npy", b = dir / "J.npy", c = dir / "K_engine.npy",
                 c_numpy = dir / "K_numpy.npy";
  const fs::path peer = peers_folder("") / "numpy_matmul.py";
  const char* python = "/usr/bin/python3";
  fmt::print("\nWhere it wins: {0}x{0} int64 values 0..9 (exact integers), against numpy's a @ b\n",
             kSide);
  if (::access(python, X_OK) != 0 || !fs::exists(peer) ||
      run_measured({python, "-c", "import numpy"}, 0).status != 0) {
    fmt::print("  (skipped: {} with numpy, or {}, not found)\n", python, peer.string());
    return 0;
  }
  write_random_npy(a, DType::int64, {kSide, kSide}, 3, IntRange{0, 10});
  write_random_npy(b, DType::int64, {kSide, kSide}, 4, IntRange{0, 10});
  std::vector<std::string> argv = {self_executable(), "multiply", a.string(), b.string(), "-o",
                                   c.string(),        "--json"};
  const std::vector<std::string> how = engine_args(engine);
  argv.insert(argv.end(), how.begin(), how.end());
  const Measured e = run_measured(argv, 0);
  if (e.status != 0) throw Error(ErrorCode::worker_failed, "demo: " + e.err);
  const Measured n =
      run_measured({python, peer.string(), a.string(), b.string(), c_numpy.string()}, 0);
  if (n.status != 0) throw Error(ErrorCode::internal, "demo: numpy: " + n.err);
  const double te = reported_number(e, "seconds", "the engine");
  const double tn = reported_number(n, "seconds", "numpy");
  const NpyMapping x = NpyMapping::open(c), y = NpyMapping::open(c_numpy);
  const bool same = x.header().data_bytes == y.header().data_bytes &&
                    std::memcmp(x.data(), y.data(), x.header().data_bytes) == 0;
  fmt::print(
      "  shmgemm multiply: {:.3f} s; numpy (np.load, a @ b, np.save): {:.3f} s: {:.1f}x "
      "faster\n",
      te, tn, tn / te);
  if (!same) {
    fmt::print(stderr, "shmgemm demo: the int64 results DIFFER from numpy's\n");
    return 1;
  }
  fmt::print("  results identical, bit for bit\n");
  return 0;
}

int run_demo(std::uint64_t size, int rounds, const FileOptions& engine) {
  const TempDir tmp("shmgemm-demo");
  const fs::path a = tmp.path() / "A.npy", b = tmp.path() / "B.npy";
  const fs::path c_engine = tmp.path() / "C_engine.npy", c_blas = tmp.path() / "C_openblas.npy";
  fmt::print("shmgemm demo: C = A·B for random {0}x{0} float64 matrices in {1}\n", size,
             tmp.path().string());
  write_random_npy(a, DType::float64, {size, size}, 1);
  write_random_npy(b, DType::float64, {size, size}, 2);
  detail::throw_if_interrupted();  // the runs below stop at once too

  // Each run is a `shmgemm multiply` process, as a user would start it, alternating between
  // the two so that both see the same machine; medians of the job times they report.
  auto run = [&](const fs::path& out, const std::vector<std::string>& how) {
    std::vector<std::string> argv = {self_executable(), "multiply", a.string(), b.string(), "-o",
                                     out.string(),      "--json"};
    argv.insert(argv.end(), how.begin(), how.end());
    const Measured m = run_measured(argv, 0);
    if (m.status != 0) throw Error(ErrorCode::worker_failed, "demo: " + m.err);
    return nlohmann::json::parse(m.out);
  };
  std::vector<double> t_engine, t_blas;
  nlohmann::json r_engine, r_blas;
  for (int i = 0; i < rounds; ++i) {
    r_engine = run(c_engine, engine_args(engine));
    t_engine.push_back(r_engine["seconds"]);
    r_blas = run(c_blas, {"--in-process"});
    t_blas.push_back(r_blas["seconds"]);
  }
  const double te = median(t_engine), tb = median(t_blas);
  const double flops = 2.0 * double(size) * double(size) * double(size);
  const std::string engine_how =
      r_engine["in_process"].get<bool>()
          ? fmt::format("shmgemm engine (in process, {})",
                        detail::count(r_engine["threads_per_worker"], "thread"))
          : fmt::format(
                "shmgemm engine ({} x {}, {}, {})", detail::count(r_engine["workers"], "worker"),
                detail::count(r_engine["threads_per_worker"], "thread"),
                r_engine["launch"].get<std::string>(), r_engine["backing"].get<std::string>());
  const std::string blas_how = fmt::format("OpenBLAS in one process ({})",
                                           detail::count(r_blas["threads_per_worker"], "thread"));
  const std::size_t width = std::max(engine_how.size(), blas_how.size()) + 1;
  fmt::print("  {:<{}} {:.3f} s, {:.1f} GFLOP/s\n", engine_how + ":", width, te, flops / te / 1e9);
  fmt::print("  {:<{}} {:.3f} s, {:.1f} GFLOP/s\n", blas_how + ":", width, tb, flops / tb / 1e9);
  fmt::print("  time ratio engine / OpenBLAS: {:.2f} (median of {} alternating runs each)\n",
             te / tb, rounds);

  const auto [diff, scale] = compare(NpyMapping::open(c_engine), NpyMapping::open(c_blas));
  // Both sum the same k products of values in [0, 1) per element; allow a few ulps per term
  // for a different order of summation.
  const double tolerance = 4 * DBL_EPSILON * double(size) * std::max(scale, 1.0);
  if (!(diff <= tolerance)) {
    fmt::print(stderr, "shmgemm demo: results DISAGREE: max |difference| {:.3g} > {:.3g}\n", diff,
               tolerance);
    return 1;
  }
  fmt::print("  results agree: max |difference| {:.3g} (tolerance {:.3g})\n", diff, tolerance);
  return show_a_win(tmp.path(), engine);
}

}  // namespace

void add_demo(CLI::App& app, Action& action) {
  struct Args {
    std::uint64_t size = 2000;
    int rounds = 3;
    FileOptions options;
  };
  const auto [cmd, args] = add_command<Args>(
      app, action, "demo", "the engine against OpenBLAS and numpy on generated matrices, checked",
      [](const Args& a) { return run_demo(a.size, a.rounds, a.options); });
  // The demo shows the workers: one per core unless --workers says otherwise (auto included).
  args->options.workers = available_cores();
  cmd->footer(
      "Generate two random float64 matrices in a temporary folder, multiply them with the "
      "engine (one worker per core unless --workers says otherwise) and with single-process "
      "OpenBLAS, each as a `shmgemm multiply` process, check that the results agree, print "
      "both times and their ratio; then an int64 product, where shmgemm wins, against numpy; "
      "remove the folder.");
  cmd->add_option("--size", args->size,
                  "rows and columns of A and B (default: 2000; at most 50000)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{50000}))
      ->option_text("N");
  cmd->add_option("--rounds", args->rounds,
                  "alternating runs of each, the median reported (default: 3; at most 100)")
      ->check(CLI::Range(1, 100))
      ->option_text("N");
  add_engine_options(*cmd, args->options);
  cmd->get_option("--workers")
      ->description(
          "worker processes (default: one per core), or auto: the cost model chooses "
          "between running in process and 1..cores workers");
}

}  // namespace shmgemm::cli
