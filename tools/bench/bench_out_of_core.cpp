// `shmgemm bench --out-of-core`: a product whose operands do not fit in the memory cgroup it runs
// in, shmgemm against the recipes a numpy user would reach for (dask.array over memory-mapped
// files, and a loop of numpy products over slabs of k), side by side in one run, in a shuffled
// order every round: seconds, the cgroup's peak, how often it reached its limit, and the time
// the disk alone needs to read what shmgemm reads.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/memory_cgroup.hpp"
#include "common/npy_file.hpp"
#include "shmgemm/error.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/temp_dir.hpp"

namespace fs = std::filesystem;

namespace shmgemm::cli {
namespace {

// Drops a file's pages from the page cache: the next run reads it from the disk.
void drop_file_cache(const fs::path& path) {
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return;
  ::fdatasync(fd.get());
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
}

// Reads all of `path`, 16 MiB at a time (into the page cache, where it stays): bytes a second.
double read_through(const fs::path& path) {
  std::uint64_t total = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw Error(ErrorCode::resource, fmt::format("{}: cannot open", path.string()));
    std::vector<char> buffer(16 << 20);
    for (ssize_t got; (got = ::read(fd.get(), buffer.data(), buffer.size())) > 0;)
      total += std::uint64_t(got);
  }
  return double(total) / seconds_since(start);
}

// The disk's speed: `path` read once from the disk, then dropped again.
double disk_read_speed(const fs::path& path) {
  drop_file_cache(path);
  const double speed = read_through(path);
  drop_file_cache(path);
  return speed;
}

// The median, or NaN for a variant that never finished.
double median_or_nan(const std::vector<double>& v) {
  return v.empty() ? NAN : median(v);
}
struct OocVariant {
  std::string name;
  std::vector<std::string> argv;  // the output path is appended
  bool limited = true;            // runs in the memory cgroup
  bool cold = true;               // A and B dropped from the page cache first (else read into it)
};

struct OocOutcome {
  std::vector<double> seconds, peak_mib, failures;
  std::string failed;  // why it did not finish, when it did not
  nlohmann::json report;
};

}  // namespace

int run_out_of_core_bench(const OutOfCoreBenchArgs& args) {
  if (::geteuid() != 0)
    throw Error(ErrorCode::unsupported,
                "bench --out-of-core: needs root, to run each product in a memory cgroup");
  const auto [m, k, n] = parse_product_shape(args.shape, "--shape");
  const fs::path peers = peers_folder(args.peers_dir) / "out_of_core.py";
  // On the disk of --dir: a folder in /tmp could be memory itself.
  const TempDir tmp("shmgemm-bench-ooc", fs::absolute(args.dir));
  const fs::path& dir = tmp.path();
  const fs::path a = dir / "A.npy", b = dir / "B.npy";
  write_random_npy(a, DType::float64, {m, k}, 1);
  write_random_npy(b, DType::float64, {k, n}, 2);
  const double speed = disk_read_speed(a);
  const double a_bytes = double(m * k * 8), b_bytes = double(k * n * 8);

  const std::string self = self_executable();
  std::vector<OocVariant> variants = {
      {"shmgemm multiply", {self, "multiply", a.string(), b.string(), "--json", "-o"}},
      {"dask.array (auto chunks)",
       {"/usr/bin/python3", peers.string(), "dask", a.string(), b.string()}},
      {"numpy, slabs of k",
       {"/usr/bin/python3", peers.string(), "numpy-slabs", a.string(), b.string()}},
      {"shmgemm multiply, no limit (the operands cached)",
       {self, "multiply", a.string(), b.string(), "--json", "-o"},
       false,
       false},
      {"dask.array, no limit",
       {"/usr/bin/python3", peers.string(), "dask", a.string(), b.string()},
       false},
  };
  std::map<std::string, OocOutcome> outcome;
  std::mt19937 rng(42);
  std::vector<std::size_t> order(variants.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  for (int round = 0; round < args.rounds; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t i : order) {
      const OocVariant& v = variants[i];
      OocOutcome& o = outcome[v.name];
      if (!o.failed.empty()) continue;  // once past the limit or the time, not again
      const fs::path c = dir / fmt::format("C{}.npy", i);
      for (const fs::path& operand : {a, b})
        if (v.cold)
          drop_file_cache(operand);
        else
          static_cast<void>(read_through(operand));
      std::optional<MemoryCgroup> group;
      if (v.limited)
        group.emplace(fmt::format("shmgemm-bench-ooc-{}-{}", ::getpid(), i), args.limit);
      if (v.limited && !group->valid())
        throw Error(ErrorCode::unsupported,
                    "bench --out-of-core: no memory cgroup can be made and limited here");
      std::vector<std::string> argv = {"/bin/sh",
                                       "-c",
                                       v.limited ? group->enter_script() : "exec \"$@\"",
                                       "sh",
                                       "timeout",
                                       "-k",
                                       "5",
                                       fmt::format("{}", args.peer_timeout)};
      argv.insert(argv.end(), v.argv.begin(), v.argv.end());
      argv.push_back(c.string());
      const Measured r = run_measured(argv, 0);
      if (r.status != 0) {
        std::error_code ec;
        fs::remove(c, ec);
        o.failed = r.status == 124 || r.status == 128 + 9
                       ? fmt::format("did not finish in {} s (the limit reached {} times)",
                                     args.peer_timeout, group ? group->failures() : 0)
                       : fmt::format("exit {}: {}", r.status, r.err.substr(0, 300));
        continue;
      }
      o.seconds.push_back(reported_number(r, "seconds", v.name));
      if (v.limited) {
        o.peak_mib.push_back(double(group->peak()) / 1048576.0);
        o.failures.push_back(double(group->failures()));
      }
      if (i == 0) o.report = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    }
    if (!args.json)
      fmt::print(stderr, "bench --out-of-core: round {} of {} done\n", round + 1, args.rounds);
  }

  // What shmgemm read, and the disk's time for it; and the panels' bound (A once a panel).
  const nlohmann::json& rep = outcome["shmgemm multiply"].report;
  const double shm_seconds = median_or_nan(outcome["shmgemm multiply"].seconds);
  const double slab = rep.value("slab_depth", 0.0), panels = rep.value("panels", 0.0);
  const double read = slab > 0 || panels <= 1 ? a_bytes + b_bytes : panels * a_bytes + b_bytes;
  nlohmann::json results = nlohmann::json::array();
  for (const OocVariant& v : variants) {
    const OocOutcome& o = outcome[v.name];
    nlohmann::json row = {{"variant", v.name},
                          {"limited", v.limited},
                          {"seconds", median_or_nan(o.seconds)},
                          {"runs", o.seconds.size()},
                          {"ratio_to_shmgemm", median_or_nan(o.seconds) / shm_seconds}};
    if (v.limited) {
      row["peak_mib"] = median_or_nan(o.peak_mib);
      row["limit_reached"] = median_or_nan(o.failures);
    }
    if (!o.failed.empty()) row["failed"] = o.failed;
    // Its last C against shmgemm's (within the cgroup).
    const fs::path c = dir / fmt::format("C{}.npy", &v - variants.data());
    if (!o.seconds.empty() && fs::exists(c) && fs::exists(dir / "C0.npy"))
      row["max_abs_diff_vs_shmgemm"] =
          max_abs_diff(NpyMapping::open(c), NpyMapping::open(dir / "C0.npy"));
    results.push_back(row);
  }
  const nlohmann::json out = {
      {"shape", {m, k, n}},
      {"limit_bytes", args.limit},
      {"disk_bytes_per_second", speed},
      {"bytes_read", read},
      {"disk_seconds", read / speed},
      {"plan", rep.contains("plan") ? rep["plan"]["reason"] : nlohmann::json()},
      {"results", results}};
  if (args.json) {
    fmt::print("{}\n", out.dump());
    return 0;
  }
  fmt::print(
      "{}x{}x{} float64 (A {:.2f} GiB, B {:.2f} GiB), each run in a memory cgroup of "
      "{:.0f} MiB, A and B dropped from the page cache first; medians of {} rounds\n",
      m, k, n, a_bytes / 1073741824.0, b_bytes / 1073741824.0, double(args.limit) / 1048576.0,
      args.rounds);
  fmt::print("shmgemm's plan: {}\n", out["plan"].is_string() ? out["plan"].get<std::string>() : "");
  fmt::print("the disk reads {:.2f} GB/s: shmgemm's {:.2f} GiB take {:.2f} s of reading alone\n\n",
             speed / 1e9, read / 1073741824.0, read / speed);
  fmt::print(
      "| variant | seconds | × shmgemm | peak MiB | limit reached | max abs diff | note "
      "|\n|---|---|---|---|---|---|---|\n");
  for (const auto& row : results) {
    const bool ran = row["runs"].get<std::size_t>() > 0;
    fmt::print("| {} | {} | {} | {} | {} | {} | {} |\n", row["variant"].get<std::string>(),
               ran ? fmt::format("{:.2f}", row["seconds"].get<double>()) : "-",
               ran ? fmt::format("{:.2f}", row["ratio_to_shmgemm"].get<double>()) : "-",
               row.contains("peak_mib") && ran
                   ? fmt::format("{:.0f}", row["peak_mib"].get<double>())
                   : "-",
               row.contains("limit_reached") && ran
                   ? fmt::format("{:.0f}", row["limit_reached"].get<double>())
                   : "-",
               row.contains("max_abs_diff_vs_shmgemm")
                   ? fmt::format("{:.1e}", row["max_abs_diff_vs_shmgemm"].get<double>())
                   : "-",
               row.value("failed", row["limited"].get<bool>() ? "" : "no memory limit"));
  }
  return 0;
}

}  // namespace shmgemm::cli
