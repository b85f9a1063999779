// `shmgemm bench --mpi`: shmgemm-mpi against ScaLAPACK's pdgemm and the single-machine engine on
// the same matrices, side by side in one run, in a shuffled order every round, with medians:
// job seconds, GFLOP/s, peak memory of the node (summed PSS of every process of the run), and
// the bytes moved between nodes, computed and measured (Open MPI's pml monitoring).
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/npy_file.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

struct MpiVariant {
  std::string name;
  std::vector<std::string> argv;  // the output path is appended
  bool mpi = true;
};

// Largest |x - y| between two float64 .npy files of one shape; infinity when they differ in
// shape or dtype.
double files_max_abs_diff(const fs::path& x, const fs::path& y) {
  const NpyMapping a = NpyMapping::open(x), b = NpyMapping::open(y);
  if (a.header().shape != b.header().shape || a.header().dtype != DType::float64 ||
      b.header().dtype != DType::float64)
    return INFINITY;
  return shmgemm::cli::max_abs_diff(a, b);
}

// Bytes sent between ranks as Open MPI's pml monitoring counted them ("E src dst N bytes ..."
// lines of every prof file in `dir`), in total and between ranks of different nodes.
std::pair<double, double> monitored_bytes(const fs::path& dir, const std::vector<int>& node_of) {
  double all = 0, between = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".prof") continue;
    std::ifstream in(entry.path());
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string kind;
      int src = 0, dst = 0;
      double bytes = 0;
      if (!(fields >> kind >> src >> dst >> bytes) || kind != "E") continue;
      all += bytes;
      const bool known = src < int(node_of.size()) && dst < int(node_of.size());
      if (!known || node_of[std::size_t(src)] != node_of[std::size_t(dst)]) between += bytes;
    }
  }
  return {all, between};
}

}  // namespace

int run_mpi_bench(std::uint64_t size, int ranks, int rounds, bool json,
                  const std::string& hostfile) {
  const std::string self = self_executable();
  const fs::path bin = fs::path(self).parent_path();
  const std::vector<std::string> launch = mpirun_command(unsigned(ranks), hostfile, "bench --mpi");
  for (const fs::path& p : {fs::path(launch[0]), bin / "shmgemm-mpi", bin / "shmgemm-pdgemm"})
    if (::access(p.c_str(), X_OK) != 0)
      throw Error(ErrorCode::unsupported,
                  fmt::format("bench --mpi: {} not found (tools/install-deps.sh installs Open "
                              "MPI and ScaLAPACK; the build makes shmgemm-mpi and "
                              "shmgemm-pdgemm where they are)",
                              p.string()));
  auto with = [&](std::vector<std::string> tail) {
    std::vector<std::string> argv = launch;
    argv.insert(argv.end(), tail.begin(), tail.end());
    return argv;
  };

  const TempDir tmp("shmgemm-bench-mpi");
  const fs::path a = tmp.path() / "A.npy", b = tmp.path() / "B.npy";
  write_random_npy(a, DType::float64, {size, size}, 1);
  write_random_npy(b, DType::float64, {size, size}, 2);
  const std::string mpi_exe = (bin / "shmgemm-mpi").string();
  std::vector<MpiVariant> variants = {
      {"shmgemm-mpi", with({mpi_exe, "multiply", a.string(), b.string(), "--json", "-o"})},
      {"shmgemm-mpi --mpi-io",
       with({mpi_exe, "multiply", a.string(), b.string(), "--mpi-io", "--json", "-o"})},
      {"shmgemm-mpi --one-rank-per-node",
       with({mpi_exe, "multiply", a.string(), b.string(), "--one-rank-per-node", "--json", "-o"})},
      {"ScaLAPACK pdgemm",
       with({(bin / "shmgemm-pdgemm").string(), a.string(), b.string(), "--json", "-o"})},
      {"single-machine engine (auto)",
       {self, "multiply", a.string(), b.string(), "--json", "-o"},
       false},
  };

  struct Figures {
    std::vector<double> seconds, compute, wall, pss;
    nlohmann::json last;
  };
  std::map<std::string, Figures> f;
  std::mt19937 rng(42);
  std::vector<std::size_t> order(variants.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  for (int round = 0; round < rounds; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t i : order) {
      const MpiVariant& v = variants[i];
      std::vector<std::string> argv = v.argv;
      argv.push_back((tmp.path() / fmt::format("C{}.npy", i)).string());
      // Timed without sampling: reading every process's smaps slows the runs it watches.
      const Measured m = run_measured(argv, 0);
      if (m.status != 0)
        throw Error(ErrorCode::internal, fmt::format("bench --mpi: {}: {}", v.name, m.err));
      Figures& x = f[v.name];
      x.seconds.push_back(reported_number(m, "seconds", v.name));
      x.compute.push_back(reported_number(m, "compute_seconds", v.name));
      x.wall.push_back(m.wall_seconds);
      x.last = nlohmann::json::parse(m.out.substr(m.out.find('{')));
    }
    if (!json) fmt::print(stderr, "bench --mpi: round {} of {} done\n", round + 1, rounds);
  }

  // Memory: one more run of each variant, sampled every 2 ms.
  for (std::size_t i = 0; i < variants.size(); ++i) {
    std::vector<std::string> argv = variants[i].argv;
    argv.push_back((tmp.path() / fmt::format("P{}.npy", i)).string());
    const Measured m = run_measured(argv, 2);
    if (m.status != 0)
      throw Error(ErrorCode::internal,
                  fmt::format("bench --mpi: {} (memory): {}", variants[i].name, m.err));
    f[variants[i].name].pss.push_back(double(m.peak_pss));
  }

  // One more run of each MPI variant with Open MPI's pml monitoring on, for the bytes moved.
  std::map<std::string, std::pair<double, double>> measured;
  for (std::size_t i = 0; i < variants.size(); ++i) {
    const MpiVariant& v = variants[i];
    if (!v.mpi) continue;
    const fs::path dir = tmp.path() / fmt::format("monitor{}", i);
    fs::create_directory(dir);
    std::vector<std::string> argv = v.argv;
    // The monitoring pml wraps the one selected: allowed beside ob1 where mpirun_command chose
    // ob1 for one machine.
    for (std::size_t j = 0; j + 1 < argv.size(); ++j)
      if (argv[j] == "pml" && argv[j + 1] == "ob1") argv[j + 1] = "ob1,monitoring";
    // (osc's monitoring wrapper refuses MPI_Win_shared_query: point-to-point only.)
    argv.insert(argv.begin() + 1, {"--mca", "osc", "^monitoring", "--mca", "pml_monitoring_enable",
                                   "1", "--mca", "pml_monitoring_enable_output", "3", "--mca",
                                   "pml_monitoring_filename", (dir / "prof").string()});
    argv.push_back((tmp.path() / fmt::format("M{}.npy", i)).string());
    const Measured m = run_measured(argv, 0);
    if (m.status != 0)
      throw Error(ErrorCode::internal, fmt::format("bench --mpi: monitored {}: {}", v.name, m.err));
    std::vector<int> node_of;
    const nlohmann::json& last = f[v.name].last;
    if (last.contains("mpi"))
      for (const auto& part : last["mpi"]["per_rank"])
        node_of.push_back(part["node"]);
    else
      for (int r = 0; r < ranks; ++r)
        node_of.push_back(r);  // pdgemm: every rank counted as a node of its own
    measured[v.name] = monitored_bytes(dir, node_of);
  }

  const std::string engine = variants.back().name;
  const double flops = 2.0 * double(size) * double(size) * double(size);
  const double engine_s = median(f[engine].seconds);
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < variants.size(); ++i) {
    const MpiVariant& v = variants[i];
    const Figures& x = f[v.name];
    const nlohmann::json& last = x.last;
    double computed = 0;
    if (last.contains("mpi")) computed = last["mpi"]["b_bytes_between_nodes"].get<double>();
    if (last.contains("summa_bytes_between_ranks"))
      computed = last["summa_bytes_between_ranks"].get<double>();
    nlohmann::json row = {
        {"variant", v.name},
        {"seconds", median(x.seconds)},
        {"compute_seconds", median(x.compute)},
        {"wall_seconds", median(x.wall)},
        {"gflops", flops / median(x.seconds) / 1e9},
        {"throughput_vs_engine", engine_s / median(x.seconds)},
        {"peak_pss_mib", median(x.pss) / 1048576.0},
        {"max_abs_diff_vs_engine",
         files_max_abs_diff(tmp.path() / fmt::format("C{}.npy", i),
                            tmp.path() / fmt::format("C{}.npy", variants.size() - 1))}};
    if (v.mpi) {
      row["bytes_between_nodes_computed"] = computed;
      row["bytes_between_nodes_measured"] = measured[v.name].second;
      row["bytes_between_ranks_measured"] = measured[v.name].first;
    }
    rows.push_back(row);
  }
  const double floor_mib = 3.0 * double(size) * double(size) * 8 / 1048576.0;
  if (json) {
    fmt::print("{}\n", nlohmann::json{{"size", size},
                                      {"ranks", ranks},
                                      {"hostfile", hostfile},
                                      {"rounds", rounds},
                                      {"abc_mib", floor_mib},
                                      {"results", rows}}
                           .dump(1));
    return 0;
  }
  fmt::print(
      "{0}x{0} float64, {1} ranks, {5}; median of {3} rounds in a shuffled order. Job seconds as "
      "each program reports them (after MPI_Init: read A and B, multiply, "
      "write C); wall includes mpirun. Peak PSS: summed over every process of the run, mpirun "
      "included, sampled every 2 ms in one more run of each (A+B+C = {4:.1f} MiB). Bytes between "
      "nodes: computed from the decomposition, and "
      "measured by Open MPI's pml monitoring (ranks of different nodes; pdgemm's ranks counted "
      "as nodes of their own).\n\n",
      size, ranks, available_cores(), rounds, floor_mib,
      hostfile.empty()
          ? fmt::format("one machine ({} cores)", available_cores())
          : fmt::format("the nodes of {} (this machine: {} cores)", hostfile, available_cores()));
  fmt::print(
      "| variant | job s | GFLOP/s | vs engine | product s | wall s | peak PSS MiB | between "
      "nodes, computed MiB | measured MiB | all rank-to-rank MiB | max abs diff |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    auto mib = [&](const char* key) {
      return r.contains(key) ? fmt::format("{:.1f}", r[key].get<double>() / 1048576.0)
                             : std::string("-");
    };
    fmt::print(
        "| {} | {:.3f} | {:.1f} | {:.2f}x | {:.3f} | {:.3f} | {:.0f} | {} | {} | {} | {:.1e} |\n",
        r["variant"].get<std::string>(), r["seconds"].get<double>(), r["gflops"].get<double>(),
        r["throughput_vs_engine"].get<double>(), r["compute_seconds"].get<double>(),
        r["wall_seconds"].get<double>(), r["peak_pss_mib"].get<double>(),
        mib("bytes_between_nodes_computed"), mib("bytes_between_nodes_measured"),
        mib("bytes_between_ranks_measured"), r["max_abs_diff_vs_engine"].get<double>());
  }
  return 0;
}

}  // namespace shmgemm::cli
