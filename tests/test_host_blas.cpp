// The host's OpenBLAS, as shmgemm uses it (engine/host_blas.hpp): its thread count honoured and
// given back, no fork while one of shmgemm's products is inside it, workers spawned where a
// thread shmgemm does not know may be inside it, and each call stopped by its own token. Cases
// that could hang run in a forked child with a deadline, so that a hang fails the case.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>
#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stop_token>
#include <thread>
#include <vector>

#include "shmgemm/shmgemm.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;

namespace {

// A square matrix of random values and a view of it.
struct Square {
  std::vector<double> data;
  std::int64_t n;
  explicit Square(std::int64_t size, unsigned seed = 1)
      : data(static_cast<std::size_t>(size * size)), n(size) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> dist(-1, 1);
    for (double& x : data)
      x = dist(rng);
  }
  MutableArrayView view() { return MutableArrayView(data.data(), DType::float64, {n, n}); }
  ArrayView cview() const {
    return ArrayView(static_cast<const void*>(data.data()), DType::float64, {n, n});
  }
};

// x @ x by OpenBLAS directly: computed before any thread of a case starts (a thread of the
// test's own inside OpenBLAS while shmgemm forks is the case shmgemm's rule is about).
std::vector<double> reference(const Square& x) {
  std::vector<double> ref(static_cast<std::size_t>(x.n * x.n));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(x.n), int(x.n), int(x.n), 1.0,
              x.data.data(), int(x.n), x.data.data(), int(x.n), 0.0, ref.data(), int(x.n));
  return ref;
}

// The largest difference between `c` and `ref`.
double error_of(const std::vector<double>& ref, const std::vector<double>& c) {
  double worst = 0;
  for (std::size_t i = 0; i < c.size(); ++i)
    worst = std::max(worst, std::abs(c[i] - ref[i]));
  return worst;
}

// Runs `body` in a child of this process and waits up to `seconds` for it: its exit status, or
// -1 when it had to be killed (a hang).
int in_child(const std::function<int()>& body, double seconds) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  const bool ended = test::eventually([&] { return test::has_exited(pid); }, seconds);
  if (!ended) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return ended && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE(
    "in process: at most the caller's OpenBLAS thread count, and whatever changes is given "
    "back, on every path") {
  if (available_cores() < 2) {
    SKIP_CASE("one core, one thread either way");
  }
  const int before = openblas_get_num_threads();
  Square x(600);
  const std::vector<double> ref = reference(x);
  std::vector<double> c(600 * 600);
  const MutableArrayView out(c.data(), DType::float64, {600, 600});
  Options in;
  in.in_process = true;
  // A host that limited OpenBLAS to one thread (threadpoolctl does this): one thread here.
  openblas_set_num_threads(1);
  Report r = matmul(x.cview(), x.cview(), out, in);
  CHECK(r.threads_per_worker == 1);
  CHECK(openblas_get_num_threads() == 1);
  r = matmul(x.cview(), x.cview(), out);  // the automatic plan too
  if (r.in_process) CHECK(r.threads_per_worker == 1);
  CHECK(openblas_get_num_threads() == 1);
  CHECK(error_of(ref, c) < 1e-10);
  openblas_set_num_threads(before);
  // A count the product sets is given back, also when the call fails midway.
  in.threads_per_worker = 1;
  matmul(x.cview(), x.cview(), out, in);
  CHECK(openblas_get_num_threads() == before);
  Square big(3000);
  std::vector<double> cc(3000 * 3000);
  in.timeout = 1e-3;  // a timeout is looked at between steps of rows
  CHECK_THROWS_AS(matmul(big.cview(), big.cview(),
                         MutableArrayView(cc.data(), DType::float64, {3000, 3000}), in),
                  Error);
  CHECK(openblas_get_num_threads() == before);
}

TEST_CASE("threads mixing fork workers and in-process products: no deadlock, every result right") {
  // OpenBLAS's fork handler stops its thread pool: with another thread inside an in-process
  // product at that moment, it deadlocked (or the product was corrupted).
  const int status = in_child(
      [] {
        Square x(400);
        const std::vector<double> ref = reference(x);
        std::atomic<int> wrong{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
          threads.emplace_back([&, t] {
            std::vector<double> c(400 * 400);
            const MutableArrayView out(c.data(), DType::float64, {400, 400});
            for (int round = 0; round < 25; ++round) {
              Options o;
              o.launch = Launch::fork;
              if ((round + t) % 2)
                o.workers = 2;
              else
                o.in_process = true;
              matmul(x.cview(), x.cview(), out, o);
              if (error_of(ref, c) > 1e-10) ++wrong;
            }
          });
        for (std::thread& th : threads)
          th.join();
        return wrong.load() == 0 ? 0 : 1;
      },
      120);
  CHECK(status == 0);
}

TEST_CASE(
    "a host's own OpenBLAS call under HostBlasGuard holds shmgemm's forks back until it ends") {
  const int status = in_child(
      [] {
        Square x(200);
        const std::vector<double> ref = reference(x);
        std::vector<double> c(200 * 200), host(200 * 200);
        std::atomic<bool> holding{false};
        std::atomic<std::int64_t> released{0};
        auto now = [] { return std::chrono::steady_clock::now().time_since_epoch().count(); };
        std::thread host_thread([&] {
          const HostBlasGuard guard;
          if (!guard.owns()) return;
          holding = true;
          // The host's own products while the guard is held (as numpy's matmul would run).
          for (int i = 0; i < 40; ++i)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 200, 200, 200, 1.0,
                        x.data.data(), 200, x.data.data(), 200, 0.0, host.data(), 200);
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          released = now();
        });
        while (!holding)
          std::this_thread::yield();
        Options o;
        o.launch = Launch::fork;
        o.workers = 2;
        matmul(x.cview(), x.cview(), MutableArrayView(c.data(), DType::float64, {200, 200}), o);
        const std::int64_t finished = now();
        host_thread.join();
        // The fork waited for the guard; both results are right.
        const bool ordered = released.load() > 0 && finished >= released.load();
        return ordered && error_of(ref, c) <= 1e-10 && error_of(ref, host) <= 1e-10 ? 0 : 1;
      },
      120);
  CHECK(status == 0);
  const HostBlasGuard free_now(std::try_to_lock);
  CHECK(free_now.owns());
}

TEST_CASE("Launch::automatic forks where no other thread may be inside OpenBLAS, else spawns") {
  const int status = in_child(
      [] {
        Square x(300);
        const std::vector<double> ref = reference(x);
        std::vector<double> c(300 * 300);
        const MutableArrayView out(c.data(), DType::float64, {300, 300});
        Options o;
        o.workers = 2;
        int failures = 0;
        auto expect = [&](Launch launch, const char* when) {
          const Report r = matmul(x.cview(), x.cview(), out, o);
          if (r.launch != launch || error_of(ref, c) > 1e-10) {
            std::fprintf(stderr, "%s: launch %s\n", when, to_string(r.launch).data());
            ++failures;
          }
        };
        // This thread and OpenBLAS's own: fork. A Pool's monitor thread is shmgemm's own.
        expect(Launch::fork, "alone");
        {
          Options p;
          p.workers = 1;
          p.pool_bytes = 16 << 20;
          Pool pool(p);
          expect(Launch::fork, "with a pool");
        }
        // A thread of the host's, computing in OpenBLAS: spawn.
        std::atomic<bool> stop{false};
        std::thread busy([&] {
          Square y(500, 2);
          std::vector<double> d(500 * 500);
          while (!stop.load())
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 500, 500, 500, 1.0,
                        y.data.data(), 500, y.data.data(), 500, 0.0, d.data(), 500);
        });
        for (int i = 0; i < 5; ++i)
          expect(Launch::spawn, "with a host thread in OpenBLAS");
        if (automatic_launch() != Launch::spawn) ++failures;
        stop.store(true);
        busy.join();
        expect(Launch::fork, "alone again");
        return failures;
      },
      120);
  CHECK(status == 0);
}

TEST_CASE("a stop token stops its own call and no other") {
  const int status = in_child(
      [] {
        Square big(2500), small(800, 3);
        const std::vector<double> ref = reference(small);
        std::vector<double> c(2500 * 2500);
        std::atomic<int> side_calls{0}, side_errors{0};
        std::atomic<bool> done{false};
        std::thread side([&] {
          std::vector<double> d(800 * 800);
          const MutableArrayView out(d.data(), DType::float64, {800, 800});
          while (!done.load()) {
            for (bool workers : {true, false}) {
              Options o;
              o.threads_per_worker = 1;
              o.launch = Launch::spawn;  // spawn: this case has threads; a fork would warn
              if (workers)
                o.workers = 1;
              else
                o.in_process = true;
              std::stop_source own;
              o.stop = own.get_token();
              try {
                matmul(small.cview(), small.cview(), out, o);
                side_errors += error_of(ref, d) > 1e-10;
                ++side_calls;
              } catch (const Error&) {
                ++side_errors;
              }
            }
          }
        });
        int failures = 0;
        for (bool workers : {true, false}) {
          std::stop_source stop;
          Options o;
          o.stop = stop.get_token();
          o.threads_per_worker = 1;
          o.launch = Launch::spawn;
          if (workers)
            o.workers = 1;
          else
            o.in_process = true;
          std::thread stopper([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            stop.request_stop();
          });
          try {
            matmul(big.cview(), big.cview(),
                   MutableArrayView(c.data(), DType::float64, {2500, 2500}), o);
            ++failures;
          } catch (const Error& e) {
            if (e.code() != ErrorCode::interrupted) ++failures;
          }
          stopper.join();
        }
        done.store(true);
        side.join();
        if (side_errors.load() != 0 || side_calls.load() < 2) ++failures;
        std::fprintf(stderr, "side calls %d, errors %d\n", side_calls.load(), side_errors.load());
        return failures;
      },
      120);
  CHECK(status == 0);
}

TEST_CASE("Options::timeout: infinity is no limit; negative and NaN are refused, naming it") {
  Square x(200);
  const std::vector<double> ref = reference(x);
  std::vector<double> c(200 * 200);
  const MutableArrayView out(c.data(), DType::float64, {200, 200});
  Options o;
  o.workers = 2;
  o.timeout = std::numeric_limits<double>::infinity();
  matmul(x.cview(), x.cview(), out, o);
  CHECK(error_of(ref, c) < 1e-10);
  Options p = o;
  p.pool_bytes = 16 << 20;
  {
    Pool pool(p);
    std::fill(c.begin(), c.end(), 0.0);
    pool.matmul(x.cview(), x.cview(), out);
    CHECK(error_of(ref, c) < 1e-10);
    CHECK(pool.stats().workers_replaced == 0);
  }
  for (double bad : {-1.0, std::nan(""), -std::numeric_limits<double>::infinity()}) {
    CAPTURE(bad);
    o.timeout = bad;
    CHECK_THROWS_WITH_AS(matmul(x.cview(), x.cview(), out, o),
                         doctest::Contains("Options::timeout"), Error);
    p.timeout = bad;
    CHECK_THROWS_WITH_AS(Pool{p}, doctest::Contains("Options::timeout"), Error);
  }
}
