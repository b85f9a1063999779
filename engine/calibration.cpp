// The machine figures behind the automatic plan: measured, cached as JSON, loaded.
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "common/mapping.hpp"
#include "common/segment.hpp"
#include "engine/job_runner.hpp"
#include "engine/launcher.hpp"
#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "engine/worker_path.hpp"
#include "shmgemm/shmgemm.hpp"
#include "worker/blas_core.hpp"
#include "worker/slice_kernel.hpp"

namespace fs = std::filesystem;

namespace shmgemm {
namespace {

constexpr int kCacheVersion = 4;

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// GFLOP/s of an m x k x n product on `threads` threads: the best of runs filling ~0.1 s.
double gemm_rate(DType dtype, std::uint64_t m, std::uint64_t k, std::uint64_t n, int threads,
                 double seconds = 0.1) {
  const std::size_t item = item_size(dtype);
  std::vector<std::byte> a(m * k * item), b(k * n * item), c(m * n * item);
  for (std::size_t i = 0; i < a.size(); i += 4)
    a[i] = std::byte{0x3f};  // finite values
  for (std::size_t i = 0; i < b.size(); i += 4)
    b[i] = std::byte{0x3f};
  const ConstMatrixRef ar{a.data(), m, k, k, Layout::row_major};
  const ConstMatrixRef br{b.data(), k, n, n, Layout::row_major};
  const MatrixRef cr{c.data(), m, n, n, Layout::row_major};
  set_blas_threads(threads);
  const BlasThreadPlacement placement(threads);  // as the engine runs them in process
  compute_rows(dtype, ar, br, cr, {0, m});       // warm up: thread pool, buffers
  double best = 0, spent = 0;
  for (int i = 0; i < 1000 && (i < 3 || spent < seconds); ++i) {
    const auto t = Clock::now();
    compute_rows(dtype, ar, br, cr, {0, m});
    const double dt = seconds_since(t);
    spent += dt;
    best = std::max(best, 2.0 * double(m) * double(k) * double(n) / dt / 1e9);
  }
  return best;
}

double gemm_rate(DType dtype, std::uint64_t s, int threads) {
  return gemm_rate(dtype, s, s, s, threads);
}

// The summed one-thread dgemm rate of `processes` forked processes running at once.
double concurrent_rate(unsigned processes) {
  const Mapping shared = Mapping::try_map(sizeof(double) * processes, PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1);
  if (!shared) return 0;
  double* rates = shared.as<double>();
  {
    detail::Launcher launcher;
    for (unsigned i = 0; i < processes; ++i)
      launcher.fork_worker(i, [rates, i] {
        rates[i] = gemm_rate(DType::float64, 1024, 1024, 1024, 1, 0.3);
        return 0;
      });
    while (launcher.live() > 0)
      launcher.wait_exits();
  }
  double sum = 0;
  for (unsigned i = 0; i < processes; ++i)
    sum += rates[i];
  return sum;
}

// The one-thread dgemm rate of OpenBLAS's fallback kernels (Prescott) relative to this process's
// kernels, measured in a forked child that switches to them (one thread: it may).
double fallback_rate(double own_gflops) {
  if (detail::kernel_here() == "Prescott") return 1.0;
  const Mapping shared =
      Mapping::try_map(sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
  if (!shared) return Calibration{}.fallback_rate;
  double* rate = shared.as<double>();
  *rate = 0;
  {
    detail::Launcher launcher;
    launcher.fork_worker(0, [rate] {
      if (!detail::use_kernels("Prescott")) return 1;
      *rate = gemm_rate(DType::float64, 1024, 1);
      return 0;
    });
    while (launcher.live() > 0)
      launcher.wait_exits();
  }
  const double measured = *rate;
  return measured > 0 ? std::min(1.0, measured / own_gflops) : Calibration{}.fallback_rate;
}

// Microseconds to map one MiB of shared pages into one more mapping, touching every page.
double fault_us_per_mib() {
  constexpr std::size_t kBytes = 64 << 20;
  SharedSegment seg = SharedSegment::create("probe", kBytes);
  std::memset(seg.data(), 1, kBytes);
  std::vector<double> runs;
  for (int i = 0; i < 3; ++i) {
    const SharedSegment again = SharedSegment::attach(seg.name(), false);
    const auto t = Clock::now();
    unsigned sum = 0;
    for (std::size_t off = 0; off < kBytes; off += 4096)
      sum += static_cast<unsigned>(again.data()[off]);
    runs.push_back(seconds_since(t) * 1e6 / 64.0 + (sum == 0 ? 1 : 0));
  }
  return median(runs);
}

double copy_gbs() {
  constexpr std::size_t kBytes = 64 << 20;
  std::vector<std::byte> from(kBytes, std::byte{1}), to(kBytes);
  double best = 0;
  for (int i = 0; i < 4; ++i) {
    const auto t = Clock::now();
    std::memcpy(to.data(), from.data(), kBytes);
    best = std::max(best, double(kBytes) / seconds_since(t) / 1e9);
  }
  return best;
}

// What a fork costs per KiB of this process's page tables: one fork with 256 MiB more of
// touched 4 KiB pages, against `without` (the cost measured without them).
double fork_us_per_pte_kib(double without) {
  constexpr std::size_t kBytes = 256 << 20;
  const Mapping pages =
      Mapping::try_map(kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  if (!pages) return Calibration{}.fork_us_per_pte_kib;
  std::byte* p = pages.data();
  ::madvise(p, kBytes, MADV_NOHUGEPAGE);
  const double before = detail::page_tables_kib();
  for (std::size_t at = 0; at < kBytes; at += 4096)
    reinterpret_cast<volatile char*>(p)[at] = 1;
  const double added = detail::page_tables_kib() - before;
  const double with = launch_cost_us(Launch::fork, 1, 9);
  if (added <= 0) return Calibration{}.fork_us_per_pte_kib;
  return std::max(0.0, (with - without) / added);
}

// The CPU's model name (/proc/cpuinfo) and OpenBLAS's kernel, which the cache is keyed on: its
// figures are per core and per process, and hold under taskset or mpirun's binding, with fewer
// cores available; another kernel computes at another rate. Read once per process.
const std::string& cpu_model() {
  static const std::string key = [] {
    std::string model;
    std::ifstream f("/proc/cpuinfo");
    for (std::string line; model.empty() && std::getline(f, line);)
      if (line.rfind("model name", 0) == 0)
        if (const auto colon = line.find(':'); colon != std::string::npos)
          model = line.substr(line.find_first_not_of(' ', colon + 1));
    return model + ", OpenBLAS " + detail::worker_kernel();
  }();
  return key;
}

}  // namespace

double launch_cost_us(Launch launch, unsigned workers, unsigned repeats) {
  const std::string exe = launch == Launch::spawn ? detail::worker_executable() : "";
  std::vector<double> runs;
  for (unsigned r = 0; r < std::max(repeats, 1u); ++r) {
    const auto t = Clock::now();
    detail::Launcher launcher;
    for (unsigned i = 0; i < workers; ++i) {
      if (launch == Launch::fork)
        launcher.fork_worker(i, [] { return 0; });
      else
        launcher.spawn_worker(i, exe, {"--probe"}, {{"OPENBLAS_NUM_THREADS", "1"}});
    }
    while (launcher.live() > 0)
      for (const auto& e : launcher.wait_exits())
        if (!e.ok())
          throw Error(ErrorCode::worker_failed,
                      fmt::format("launch probe: worker {} {}", e.id, e.describe()));
    runs.push_back(seconds_since(t) * 1e6);
  }
  return median(runs);
}

fs::path calibration_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return fs::path(xdg) / "shmgemm" / "calibration.json";
  const char* home = std::getenv("HOME");
  if (!(home && *home)) {
    const passwd* pw = ::getpwuid(::getuid());
    home = pw ? pw->pw_dir : "/tmp";
  }
  return fs::path(home) / ".cache" / "shmgemm" / "calibration.json";
}

Calibration measure_calibration() {
  Calibration c;
  c.cores = available_cores();
  // Launch costs first, while this process has no BLAS threads or buffers to fork.
  const unsigned many = std::max(2u, c.cores);
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    const double one = launch_cost_us(launch, 1, 15);
    const double all = launch_cost_us(launch, many, 15);
    const double per = std::max(0.0, (all - one) / double(many - 1));
    (launch == Launch::fork ? c.fork_per_worker_us : c.spawn_per_worker_us) = per;
    (launch == Launch::fork ? c.fork_base_us : c.spawn_base_us) = std::max(0.0, one - per);
  }
  c.fork_us_per_pte_kib = fork_us_per_pte_kib(c.fork_base_us + c.fork_per_worker_us);
  // Several one-thread processes at once, before this process runs any BLAS itself.
  const double together = c.cores > 1 ? concurrent_rate(c.cores) : 0;
  c.fault_us_per_mib = fault_us_per_mib();
  c.copy_gbs = copy_gbs();
  c.gflops_f64 = gemm_rate(DType::float64, 1024, 1);
  c.gflops_f32 = gemm_rate(DType::float32, 1024, 1);
  c.fallback_rate = fallback_rate(c.gflops_f64);
  const int all = static_cast<int>(c.cores);
  c.process_scaling = c.cores > 1 ? std::min(1.0, together / (c.gflops_f64 * c.cores)) : 1.0;
  c.thread_scaling =
      c.cores > 1 ? std::min(1.0, gemm_rate(DType::float64, 1024, all) / (c.gflops_f64 * all))
                  : 1.0;
  c.thread_scaling_512 = c.cores > 1 ? std::min(1.0, gemm_rate(DType::float64, 512, all) /
                                                         (gemm_rate(DType::float64, 512, 1) * all))
                                     : 1.0;
  // The skinny classes, shaped as typical skinny products: k, m or n long, the others 64.
  // 64 MiB operands, beyond the caches.
  const std::uint64_t shapes[3][3] = {{64, 131072, 64}, {131072, 64, 64}, {64, 64, 131072}};
  for (int i = 0; i < 3; ++i) {
    const auto [m, k, n] = shapes[i];
    const double one = gemm_rate(DType::float64, m, k, n, 1);
    c.skinny_rate[i] = std::min(1.0, one / c.gflops_f64);
    c.skinny_scaling[i] =
        c.cores > 1 ? std::min(1.0, gemm_rate(DType::float64, m, k, n, all) / (one * all)) : 1.0;
  }
  // eff(d) = d / (d + h) at d = 64 gives h.
  const double small = gemm_rate(DType::float64, 64, 1);
  c.half_rate_dim = std::clamp(64.0 * (c.gflops_f64 / small - 1.0), 1.0, 4096.0);
  c.source = "measured now";
  return c;
}

std::string calibration_json(const Calibration& c, int indent) {
  const nlohmann::json j = {{"version", kCacheVersion},
                            {"source", c.source},
                            {"cores", c.cores},
                            {"cpu", cpu_model()},
                            {"gflops_f64", c.gflops_f64},
                            {"gflops_f32", c.gflops_f32},
                            {"thread_scaling", c.thread_scaling},
                            {"thread_scaling_512", c.thread_scaling_512},
                            {"skinny_rate", c.skinny_rate},
                            {"skinny_scaling", c.skinny_scaling},
                            {"process_scaling", c.process_scaling},
                            {"half_rate_dim", c.half_rate_dim},
                            {"fork_base_us", c.fork_base_us},
                            {"fork_per_worker_us", c.fork_per_worker_us},
                            {"fork_us_per_pte_kib", c.fork_us_per_pte_kib},
                            {"spawn_base_us", c.spawn_base_us},
                            {"spawn_per_worker_us", c.spawn_per_worker_us},
                            {"fault_us_per_mib", c.fault_us_per_mib},
                            {"copy_gbs", c.copy_gbs},
                            {"fallback_rate", c.fallback_rate}};
  return j.dump(indent);
}

std::string configuration_json() {
  const Calibration c = load_calibration();
  detail::ProductShape square;
  square.m = square.k = square.n = 4000;
  Options options;
  Report plan;
  static_cast<void>(detail::plan_product(square, options, plan));
  const BlasKernel kernels = blas_kernel();
  nlohmann::json candidates = nlohmann::json::array();
  for (const PlanCandidate& x : plan.candidates)
    candidates.push_back({{"workers", x.workers},
                          {"threads", x.threads},
                          {"predicted_seconds", x.predicted_seconds}});
  nlohmann::json figures = nlohmann::json::parse(calibration_json(c));
  for (const char* key : {"version", "source", "cpu"})
    figures.erase(key);
  const nlohmann::json j = {
      {"version", SHMGEMM_VERSION},
      {"openblas", ::openblas_get_config()},
      {"kernels", {{"host", kernels.name}, {"workers", kernels.workers}}},
      {"cores", available_cores()},
      {"calibration",
       {{"file", calibration_path().string()}, {"source", c.source}, {"figures", figures}}},
      {"plan_4000",
       {{"reason", plan.plan_reason},
        {"candidates", candidates},
        {"workers", plan.workers},
        {"threads_per_worker", plan.threads_per_worker},
        {"in_process", plan.in_process}}}};
  return j.dump();
}

void save_calibration(const Calibration& c) {
  const fs::path path = calibration_path();
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  // Whole or not at all: a temporary beside it, renamed.
  const fs::path tmp = path.string() + fmt::format(".{}.tmp", ::getpid());
  {
    std::ofstream f(tmp);
    f << calibration_json(c, 2) << '\n';
    if (!f)
      throw Error(ErrorCode::resource,
                  fmt::format("{}: cannot write the calibration", tmp.string()));
  }
  fs::rename(tmp, path, ec);
  if (ec)
    throw Error(ErrorCode::resource,
                fmt::format("{}: cannot write the calibration: {}", path.string(), ec.message()));
}

namespace {

// The calibration in `path` for a process that may use `cores`: the built-in defaults where it
// is missing, for another machine, or unreadable (saying so in `source`).
Calibration read_calibration(const fs::path& path, unsigned cores) {
  Calibration c;
  c.cores = cores;
  std::ifstream f(path);
  if (!f) return c;
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    const std::string cpu = j.value("cpu", std::string());
    const bool same_machine = cpu.empty() ? j.at("cores") == c.cores : cpu == cpu_model();
    if (j.at("version") != kCacheVersion || !same_machine) {
      c.source = fmt::format("built-in defaults ({} is for another version, CPU or BLAS kernel)",
                             path.string());
      return c;
    }
    Calibration m;
    m.cores = c.cores;
    const unsigned measured_cores = j.at("cores");
    m.gflops_f64 = j.at("gflops_f64");
    m.gflops_f32 = j.at("gflops_f32");
    m.thread_scaling = j.at("thread_scaling");
    m.thread_scaling_512 = j.at("thread_scaling_512");
    for (int i = 0; i < 3; ++i) {
      m.skinny_rate[i] = j.at("skinny_rate").at(i);
      m.skinny_scaling[i] = j.at("skinny_scaling").at(i);
      if (!(m.skinny_rate[i] > 0 && m.skinny_scaling[i] > 0))
        throw std::runtime_error("non-positive figure");
    }
    m.process_scaling = j.at("process_scaling");
    m.half_rate_dim = j.at("half_rate_dim");
    m.fork_base_us = j.at("fork_base_us");
    m.fork_per_worker_us = j.at("fork_per_worker_us");
    m.fork_us_per_pte_kib = j.value("fork_us_per_pte_kib", m.fork_us_per_pte_kib);
    m.spawn_base_us = j.at("spawn_base_us");
    m.spawn_per_worker_us = j.at("spawn_per_worker_us");
    m.fault_us_per_mib = j.at("fault_us_per_mib");
    m.copy_gbs = j.at("copy_gbs");
    m.fallback_rate = j.value("fallback_rate", m.fallback_rate);
    if (!(m.gflops_f64 > 0 && m.gflops_f32 > 0 && m.thread_scaling > 0 &&
          m.thread_scaling_512 > 0 && m.process_scaling > 0 && m.copy_gbs > 0 &&
          m.fallback_rate > 0))
      throw std::runtime_error("non-positive figure");
    m.source = measured_cores == c.cores
                   ? path.string()
                   : fmt::format("{} (measured with {} cores; {} available here)", path.string(),
                                 measured_cores, c.cores);
    return m;
  } catch (const std::exception& e) {
    c.source = fmt::format("built-in defaults ({} is unreadable: {})", path.string(), e.what());
    return c;
  }
}

}  // namespace

Calibration load_calibration() {
  // The file is read again only when it changed (or the cores or the path did): reading and
  // parsing it costs more than a small product.
  struct Read {
    fs::path path;
    unsigned cores = 0;
    struct ::stat file {};
    bool exists = false;
    Calibration calibration;
  };
  static auto* const mutex = new std::mutex;  // never destroyed: products may outlive statics
  static auto* const last = new std::optional<Read>;
  Read now;
  now.path = calibration_path();
  now.cores = available_cores();
  now.exists = ::stat(now.path.c_str(), &now.file) == 0;
  const std::lock_guard lock(*mutex);
  if (*last && (*last)->path == now.path && (*last)->cores == now.cores &&
      (*last)->exists == now.exists &&
      (!now.exists ||
       ((*last)->file.st_dev == now.file.st_dev && (*last)->file.st_ino == now.file.st_ino &&
        (*last)->file.st_size == now.file.st_size &&
        (*last)->file.st_mtim.tv_sec == now.file.st_mtim.tv_sec &&
        (*last)->file.st_mtim.tv_nsec == now.file.st_mtim.tv_nsec)))
    return (*last)->calibration;
  now.calibration = read_calibration(now.path, now.cores);
  *last = std::move(now);
  return (*last)->calibration;
}

}  // namespace shmgemm
