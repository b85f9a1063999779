// A host program that multiplies matrices it owns with shmgemm: once with matmul (workers
// started for the call), then many times through a Pool (workers started once), with operands
// both in the pool's shared memory and in its own. Exits non-zero if any result is wrong.
#include <shmgemm/shmgemm.hpp>

#include <cmath>
#include <cstdio>
#include <future>
#include <random>
#include <vector>

namespace {

// The largest |c - a·b| over all elements, by a naive loop.
double max_error(shmgemm::MatrixView<const double> a, shmgemm::MatrixView<const double> b,
                 shmgemm::MatrixView<const double> c) {
  double worst = 0;
  for (std::size_t i = 0; i < a.rows(); ++i)
    for (std::size_t j = 0; j < b.cols(); ++j) {
      double sum = 0;
      for (std::size_t p = 0; p < a.cols(); ++p)
        sum += a(i, p) * b(p, j);
      worst = std::max(worst, std::abs(sum - c(i, j)));
    }
  return worst;
}

}  // namespace

int main() {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> dist(-1, 1);
  const std::size_t m = 300, k = 200, n = 250;
  std::vector<double> a(m * k), b(k * n), c(m * n);
  for (double& x : a)
    x = dist(rng);
  for (double& x : b)
    x = dist(rng);
  const shmgemm::MatrixView<const double> av(a.data(), m, k), bv(b.data(), k, n);
  const shmgemm::MatrixView<double> cv(c.data(), m, n);
  bool ok = true;

  try {
    // One call: workers are started for it (fork, 2 workers), and C is copied back once.
    shmgemm::MatmulOptions once;
    once.workers = 2;
    const shmgemm::Report r = shmgemm::matmul_into(av, bv, cv, once);
    const double e1 = max_error(av, bv, cv);
    std::printf("matmul: %ux%u %s, %u workers, %.4f s, %llu bytes copied, max error %.2e\n",
                unsigned(m), unsigned(n), r.dtype.c_str(), r.workers, r.seconds,
                static_cast<unsigned long long>(r.copied_bytes), e1);
    ok = ok && e1 < 1e-10;

    // A pool: workers started once, spawned (no fork of this process), reused for every job.
    shmgemm::PoolOptions options;
    options.workers = 2;
    options.launch = shmgemm::Launch::spawn;
    options.arena_bytes = 64 << 20;
    shmgemm::Pool pool(options);
    shmgemm::SharedMatrix<double> pa = pool.alloc<double>(m, k), pb = pool.alloc<double>(k, n),
                                  pc = pool.alloc<double>(m, n);
    for (std::size_t i = 0; i < m * k; ++i)
      pa.data()[i] = a[i];
    for (std::size_t i = 0; i < k * n; ++i)
      pb.data()[i] = b[i];
    pool.matmul(pa.view(), pb.view(), pc.view());  // zero copies
    const double e2 = max_error(pa.view(), pb.view(), pc.view());
    std::vector<std::future<shmgemm::Report>>
        jobs;  // many at once, from this program's memory (staged)
    std::vector<std::vector<double>> outs(8, std::vector<double>(m * n));
    for (auto& out : outs)
      jobs.push_back(pool.submit(av, bv, shmgemm::MatrixView<double>(out.data(), m, n)));
    for (auto& job : jobs)
      job.get();
    double e3 = 0;
    for (auto& out : outs)
      e3 = std::max(e3, max_error(av, bv, shmgemm::MatrixView<const double>(out.data(), m, n)));
    const shmgemm::PoolStats s = pool.stats();
    std::printf("pool: %u workers, %llu jobs, %llu bytes staged, max error %.2e / %.2e\n",
                pool.workers(), static_cast<unsigned long long>(s.jobs),
                static_cast<unsigned long long>(s.staged_bytes), e2, e3);
    ok = ok && e2 < 1e-10 && e3 < 1e-10 && s.failed_jobs == 0;
  } catch (const shmgemm::Error& e) {
    std::fprintf(stderr, "host_app: %s\n", e.what());
    return 1;
  }
  std::printf("host_app: %s\n", ok ? "all results agree" : "WRONG RESULTS");
  return ok ? 0 : 1;
}
