// Figures for the host-program API, with Google Benchmark, side by side in one run:
//  - the round trip of one tiny (8x8) job through Pool::matmul, against a one-shot matmul that
//    starts its workers for the call;
//  - 2000^2 float64 through a pool with operands from pool.alloc, against OpenBLAS in process;
//  - copying C (4000^2 doubles) back to the caller, as matmul does;
//  - 10,000 jobs from 4 submitting threads: completion, failures, and growth of the pool's
//    arena and of the workers' memory.
// Run: build/bin/shmgemm-pool-benchmark (or `make pool-bench`). Medians come from the
// repetitions (--benchmark_repetitions, 5 by default here).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "shmgemm/shmgemm.hpp"
#include "worker/blas_core.hpp"

namespace {

using shmgemm::MatrixView;

std::unique_ptr<shmgemm::Pool>& pool() {
  static std::unique_ptr<shmgemm::Pool> p;
  return p;
}

shmgemm::Pool& the_pool() {
  if (!pool()) {
    shmgemm::PoolOptions o;
    o.arena_bytes = std::size_t{512} << 20;  // fork, one worker per core
    pool() = std::make_unique<shmgemm::Pool>(o);
  }
  return *pool();
}

// Summed RSS of this process's children (the pool's workers, children of its monitor thread:
// every thread's children list is read), in bytes.
double children_rss() {
  double total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream kids(task.path() / "children");
    for (pid_t p; kids >> p;) {
      std::ifstream status("/proc/" + std::to_string(p) + "/status");
      for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) total += std::stod(line.substr(6)) * 1024;
    }
  }
  return total;
}

void fill(double* p, std::size_t count) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (std::size_t i = 0; i < count; ++i)
    p[i] = dist(rng);
}

void BM_PoolTinyRoundTrip(benchmark::State& state) {
  shmgemm::Pool& p = the_pool();
  auto a = p.alloc<double>(8, 8), b = p.alloc<double>(8, 8), c = p.alloc<double>(8, 8);
  fill(a.data(), 64);
  fill(b.data(), 64);
  for (auto _ : state)
    p.matmul(a.view(), b.view(), c.view());
}

void BM_OneShotTinyWithWorkers(benchmark::State& state) {
  std::vector<double> a(64), b(64), c(64);
  fill(a.data(), 64);
  fill(b.data(), 64);
  shmgemm::MatmulOptions o;
  o.workers = 2;  // force workers: the automatic plan would stay in process
  for (auto _ : state)
    shmgemm::matmul_into(MatrixView<const double>(a.data(), 8, 8),
                         MatrixView<const double>(b.data(), 8, 8),
                         MatrixView<double>(c.data(), 8, 8), o);
}

void gflops(benchmark::State& state, double n) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void BM_Pool2000(benchmark::State& state) {
  shmgemm::Pool& p = the_pool();
  const std::size_t n = 2000;
  auto a = p.alloc<double>(n, n), b = p.alloc<double>(n, n), c = p.alloc<double>(n, n);
  fill(a.data(), n * n);
  fill(b.data(), n * n);
  for (auto _ : state)
    p.matmul(a.view(), b.view(), c.view());
  gflops(state, double(n));
}

void BM_InProcessOpenBLAS2000(benchmark::State& state) {
  const std::size_t n = 2000;
  std::vector<double> a(n * n), b(n * n), c(n * n);
  fill(a.data(), n * n);
  fill(b.data(), n * n);
  shmgemm::MatmulOptions o;
  o.in_process = true;  // OpenBLAS with every core, in this process
  for (auto _ : state)
    shmgemm::matmul_into(MatrixView<const double>(a.data(), n, n),
                         MatrixView<const double>(b.data(), n, n),
                         MatrixView<double>(c.data(), n, n), o);
  gflops(state, double(n));
}

// What matmul pays to bring C (4000 x 4000 doubles) from shared memory into the caller's
// buffer, when that buffer's pages are already mapped.
void BM_CopyBackC4000(benchmark::State& state) {
  shmgemm::Pool& p = the_pool();
  const std::size_t n = 4000;
  auto shared = p.alloc<double>(n, n);
  std::vector<double> host(n * n, 0.0);
  for (auto _ : state) {
    std::memcpy(host.data(), shared.data(), n * n * sizeof(double));
    benchmark::ClobberMemory();
  }
}

// 4 threads x 2500 iterations = 10,000 jobs (64x64 from host memory, so each is staged).
void BM_Stress10000Jobs(benchmark::State& state) {
  shmgemm::Pool& p = the_pool();
  static shmgemm::PoolStats before;
  static double rss_before = 0;
  if (state.thread_index() == 0) {
    before = p.stats();
    rss_before = children_rss();
  }
  std::vector<double> a(64 * 64), b(64 * 64), c(64 * 64);
  fill(a.data(), a.size());
  fill(b.data(), b.size());
  for (auto _ : state)
    p.matmul(MatrixView<const double>(a.data(), 64, 64), MatrixView<const double>(b.data(), 64, 64),
             MatrixView<double>(c.data(), 64, 64));
  if (state.thread_index() == 0) {
    const shmgemm::PoolStats after = p.stats();
    state.counters["jobs_total"] = double(after.jobs - before.jobs);
    state.counters["failed"] = double(after.failed_jobs - before.failed_jobs);
    state.counters["arena_growth_bytes"] =
        double(after.arena_used_bytes) - double(before.arena_used_bytes);
    state.counters["workers_rss_growth_MiB"] = (children_rss() - rss_before) / (1 << 20);
  }
}

}  // namespace

BENCHMARK(BM_PoolTinyRoundTrip)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OneShotTinyWithWorkers)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Pool2000)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_InProcessOpenBLAS2000)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CopyBackC4000)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Stress10000Jobs)
    ->Threads(4)
    ->Iterations(2500)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  shmgemm::detail::use_worker_kernels();
  // Start the pool before Google Benchmark's threads exist: fork then copies one thread.
  the_pool();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  pool().reset();
  return 0;
}
