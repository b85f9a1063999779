// `shmgemm bench --matmul`: np.matmul's cases (exact integers, batches) against numpy itself,
// side by side in one run, alternating, with medians, ratios and a check of the answers.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/npy_file.hpp"
#include "engine/tooling.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

struct Operand {
  DType dtype;
  std::vector<std::uint64_t> shape;
  std::optional<IntRange> range;  // none: the whole range (integers), [0, 1) (floats)
};

struct Case {
  std::string name, label;
  Operand a, b;
};

std::vector<Case> all_cases() {
  const IntRange seed{0, 10};  // np.random.randint(0, 10), small values
  const std::vector<std::uint64_t> sq{1000, 1000};
  return {
      {"int64-small",
       "int64 randint(0,10) 1000^2",
       {DType::int64, sq, seed},
       {DType::int64, sq, seed}},
      {"int64", "int64 full range 1000^2", {DType::int64, sq, {}}, {DType::int64, sq, {}}},
      {"int32-small",
       "int32 randint(0,10) 1000^2",
       {DType::int32, sq, seed},
       {DType::int32, sq, seed}},
      {"int32", "int32 full range 1000^2", {DType::int32, sq, {}}, {DType::int32, sq, {}}},
      {"batch",
       "2000 x (100x200)(200x200) f64, A broadcast",
       {DType::float64, {100, 200}, {}},
       {DType::float64, {2000, 200, 200}, {}}},
      {"small",
       "981 x (10x20)(20x20) f64",
       {DType::float64, {981, 10, 20}, {}},
       {DType::float64, {981, 20, 20}, {}}},
  };
}

// "identical" for integers with equal bytes; otherwise the largest difference relative to the
// largest magnitude of numpy's result.
}  // namespace

double max_abs_diff(const NpyMapping& x, const NpyMapping& y, double* largest_y) {
  // Real and imaginary parts alike, as floats or doubles.
  const DType d = x.header().dtype;
  const bool single = d == DType::float32 || d == DType::complex64;
  const std::uint64_t scalars = x.header().element_count * (is_complex(d) ? 2 : 1);
  double diff = 0, top = 0;
  for (std::uint64_t i = 0; i < scalars; ++i) {
    double u, v;
    if (single) {
      float a, b;
      std::memcpy(&a, x.data() + 4 * i, 4);
      std::memcpy(&b, y.data() + 4 * i, 4);
      u = a, v = b;
    } else {
      std::memcpy(&u, x.data() + 8 * i, 8);
      std::memcpy(&v, y.data() + 8 * i, 8);
    }
    diff = std::max(diff, std::abs(u - v));
    top = std::max(top, std::abs(v));
  }
  if (largest_y != nullptr) *largest_y = top;
  return diff;
}

namespace {

std::string compare(const fs::path& ours, const fs::path& theirs) {
  const NpyMapping x = NpyMapping::open(ours), y = NpyMapping::open(theirs);
  if (x.header().dtype != y.header().dtype || x.header().shape != y.header().shape)
    return fmt::format("DIFFERENT: {} {} against numpy's {} {}", dtype_name(x.header().dtype),
                       shape_string(x.header().shape), dtype_name(y.header().dtype),
                       shape_string(y.header().shape));
  const std::uint64_t bytes = x.header().data_bytes;
  if (is_integer(x.header().dtype))
    return std::memcmp(x.data(), y.data(), bytes) == 0 ? "bit-identical" : "DIFFERENT bits";
  double top = 0;
  const double diff = max_abs_diff(x, y, &top);
  return fmt::format("max rel. diff {:.1e}", top > 0 ? diff / top : diff);
}

}  // namespace

int run_matmul_bench(const std::string& names, int rounds, const fs::path& peers_dir, bool json) {
  std::vector<Case> cases;
  for (const Case& c : all_cases())
    if (names.empty() || std::ranges::count(split_list(names), c.name) > 0) cases.push_back(c);
  if (cases.empty())
    throw Error::bad_option(
        "--cases", fmt::format("--cases '{}': expected some of int64-small, int64, int32-small, "
                               "int32, batch, small",
                               names));
  const fs::path peer = peers_dir / "numpy_matmul.py";
  if (run_measured({"/usr/bin/python3", "-c", "import numpy"}, 0).status != 0 || !fs::exists(peer))
    throw Error(ErrorCode::unsupported,
                "bench --matmul: needs /usr/bin/python3 with numpy (Debian's python3-numpy) and "
                "the peer scripts");
  const TempDir tmp("shmgemm-bench");
  const std::string self = self_executable();
  nlohmann::json rows = nlohmann::json::array();
  // The limit the products are measured against: OpenBLAS's dgemm alone, 2000^2 in memory with
  // every core (`shmgemm bench --limit`), once per round among the cases' runs.
  std::vector<double> limit_seconds;
  constexpr double kLimitFlops = 2.0 * 2000 * 2000 * 2000;
  auto measure_limit = [&] {
    const Measured m = run_measured({self, "bench", "--limit", "2000x2000x2000"}, 0);
    if (m.status != 0) throw Error(ErrorCode::internal, fmt::format("bench: limit: {}", m.err));
    limit_seconds.push_back(reported_number(m, "seconds", "the limit"));
  };
  for (const Case& c : cases) {
    const fs::path a = tmp.path() / "A.npy", b = tmp.path() / "B.npy";
    const fs::path ours = tmp.path() / "C.npy", theirs = tmp.path() / "N.npy";
    write_random_npy(a, c.a.dtype, c.a.shape, 1, c.a.range);
    write_random_npy(b, c.b.dtype, c.b.shape, 2, c.b.range);
    std::map<std::string, std::vector<double>> s;
    for (int round = 0; round < rounds; ++round) {
      measure_limit();
      // Alternating, and each side first every other round.
      for (int side = 0; side < 2; ++side) {
        if ((side + round) % 2 == 0) {
          const Measured m = run_measured(
              {self, "multiply", a.string(), b.string(), "-o", ours.string(), "--json"}, 0);
          if (m.status != 0)
            throw Error(ErrorCode::internal, fmt::format("bench: {}: {}", c.name, m.err));
          s["ours"].push_back(reported_number(m, "seconds", "shmgemm"));
          s["ours_compute"].push_back(reported_number(m, "compute_seconds", "shmgemm"));
        } else {
          const Measured m = run_measured(
              {"/usr/bin/python3", peer.string(), a.string(), b.string(), theirs.string()}, 0);
          if (m.status != 0)
            throw Error(ErrorCode::internal, fmt::format("bench: numpy on {}: {}", c.name, m.err));
          s["numpy"].push_back(reported_number(m, "seconds", "numpy"));
          s["numpy_matmul"].push_back(reported_number(m, "matmul_seconds", "numpy"));
        }
      }
    }
    const double o = median(s["ours"]), n = median(s["numpy"]);
    const double oc = median(s["ours_compute"]), nm = median(s["numpy_matmul"]);
    // np.matmul's flops: 2mkn per product of the broadcast stack.
    auto lead = [](const std::vector<std::uint64_t>& shape) {
      double p = 1;
      for (std::size_t i = 0; i + 2 < shape.size(); ++i)
        p *= double(shape[i]);
      return p;
    };
    const auto& as = c.a.shape;
    const auto& bs = c.b.shape;
    const double flops = 2.0 * std::max(lead(as), lead(bs)) * double(as[as.size() - 2]) *
                         double(as.back()) * double(bs.back());
    const double limit_gflops = kLimitFlops / median(limit_seconds) / 1e9;
    rows.push_back({{"case", c.name},
                    {"label", c.label},
                    {"shmgemm_seconds", o},
                    {"numpy_seconds", n},
                    {"speedup", n / o},
                    {"shmgemm_compute_seconds", oc},
                    {"numpy_matmul_seconds", nm},
                    {"compute_speedup", nm / oc},
                    {"product_gflops", flops / oc / 1e9},
                    {"limit_gflops", limit_gflops},
                    {"product_vs_limit", flops / oc / 1e9 / limit_gflops},
                    {"answer", compare(ours, theirs)}});
    if (!json) fmt::print(stderr, "bench --matmul: {} done\n", c.name);
  }
  if (json) {
    fmt::print("{}\n", nlohmann::json{{"rounds", rounds}, {"results", rows}}.dump(1));
    return 0;
  }
  fmt::print(
      "np.matmul's cases, median of {} alternating runs. Whole job: read A and B, multiply, "
      "write C (both sides). Product only: shmgemm's compute seconds (workers' or in-process "
      "phases) against numpy's np.matmul call alone; GFLOP/s: np.matmul's 2mkn flops over "
      "shmgemm's product seconds; vs limit: against OpenBLAS's dgemm alone, 2000^2 in memory "
      "with every core ({:.1f} GFLOP/s, median of {} runs among these).\n\n",
      rounds, kLimitFlops / median(limit_seconds) / 1e9, limit_seconds.size());
  fmt::print(
      "| case | shmgemm s | numpy s | speedup | product only: shmgemm s | numpy s | speedup | "
      "GFLOP/s | vs limit | answer |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows)
    fmt::print(
        "| {} | {:.4f} | {:.4f} | {:.1f}x | {:.4f} | {:.4f} | {:.1f}x | {:.1f} | {:.2f} | {} |\n",
        r["label"].get<std::string>(), r["shmgemm_seconds"].get<double>(),
        r["numpy_seconds"].get<double>(), r["speedup"].get<double>(),
        r["shmgemm_compute_seconds"].get<double>(), r["numpy_matmul_seconds"].get<double>(),
        r["compute_speedup"].get<double>(), r["product_gflops"].get<double>(),
        r["product_vs_limit"].get<double>(), r["answer"].get<std::string>());
  return 0;
}

}  // namespace shmgemm::cli
