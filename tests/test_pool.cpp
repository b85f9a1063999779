// shmgemm::Pool: persistent workers, zero-copy operands, staging, many submitters, a worker
// killed under load, shutdown with jobs in flight.
#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "shmgemm/shmgemm.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::dense;

// Set in a forked child of this test program that exits through std::exit: LeakSanitizer would
// see what the parent's other threads held (their stacks are not in the child) as leaked.
static volatile bool forked_child = false;
extern "C" int __lsan_is_turned_off() {
  return forked_child ? 1 : 0;
}

namespace {

Options pool_options(Launch launch, unsigned workers = 2) {
  Options o;
  o.launch = launch;
  o.workers = workers;
  o.pool_bytes = 256 << 20;
  return o;
}

template <class T>
void fill(MatrixView<T> v, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(-1, 1);
  for (std::size_t i = 0; i < v.rows(); ++i)
    for (std::size_t j = 0; j < v.cols(); ++j)
      v(i, j) = static_cast<T>(dist(rng));
}

template <class T>
double error_of(MatrixView<T> a, MatrixView<T> b, MatrixView<T> c) {
  return test::max_rel_diff(dense(c), test::reference_product(dense(a), dense(b)));
}

bool clean_shm() {
  return test::segments_of(::getpid()).empty();
}

// Clock ticks process `pid` has run (user and system).
long cpu_ticks(pid_t pid) {
  const std::string stat = test::read_file_if_any(fmt::format("/proc/{}/stat", pid));
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; fields >> field && i <= 15; ++i)
    if (i == 14 || i == 15) ticks += std::stol(field);
  return ticks;
}

}  // namespace

TEST_CASE("pool operands from pool.alloc reach the workers with no copy") {
  std::mt19937_64 rng(1);
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    {
      Pool pool(pool_options(launch));
      CHECK(pool.workers() == 2);
      SharedMatrix<double> a = pool.alloc<double>(97, 89), b = pool.alloc<double>(89, 101),
                           c = pool.alloc<double>(97, 101);
      CHECK(a.rows() == 97);
      CHECK(a.cols() == 89);
      CHECK(a.view().data() == a.data());
      fill(a.view(), rng);
      fill(b.view(), rng);
      for (int round = 0; round < 3; ++round) {
        pool.matmul(a.view(), b.view(), c.view());
        CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 89));
      }
      SharedMatrix<float> fa = pool.alloc<float>(20, 30), fb = pool.alloc<float>(30, 10),
                          fc = pool.alloc<float>(20, 10);
      fill(fa.view(), rng);
      fill(fb.view(), rng);
      pool.submit(fa.view(), fb.view(), fc.view()).get();
      CHECK(error_of(fa.view(), fb.view(), fc.view()) <= test::tolerance(DType::float32, 30));
      const PoolStats s = pool.stats();
      CHECK(s.jobs == 4);
      CHECK(s.staged_bytes == 0);
      CHECK(s.failed_jobs == 0);
    }
    CHECK(clean_shm());
  }
}

TEST_CASE("views outside the pool are staged in and out, in any order and leading dimension") {
  std::mt19937_64 rng(2);
  Pool pool(pool_options(Launch::fork));
  std::vector<double> as(40 * 31), bs(30 * 25 + 5), cs(40 * 25 * 2);
  MatrixView<double> a(as.data(), 40, 30, 31), b(bs.data(), 30, 25, 30, Order::col_major),
      c(cs.data(), 40, 25, 41, Order::col_major);
  fill(a, rng);
  fill(b, rng);
  pool.matmul(a, b, c);
  CHECK(error_of(a, b, c) <= test::tolerance(DType::float64, 30));
  // A (40 rows of 31), B (25 columns of 30), and C (40 x 25) out.
  CHECK(pool.stats().staged_bytes == (39 * 31 + 30 + 24 * 30 + 30 + 40 * 25) * 8);
  CHECK(pool.stats().arena_used_bytes < 4096);  // the staging is freed
}

TEST_CASE("submit_many: a future per product, in order, each the product of its own pair") {
  std::mt19937_64 rng(61);
  Pool pool(pool_options(Launch::fork));
  // Products of many sizes and dtypes, the operands outside the arena (staged).
  std::vector<std::vector<double>> store;
  std::vector<Pool::Product> products;
  std::vector<std::int64_t> sides;
  for (int i = 0; i < 12; ++i) {
    const std::int64_t m = 1 + std::int64_t(rng() % 150), k = 1 + std::int64_t(rng() % 150),
                       n = 1 + std::int64_t(rng() % 150);
    store.emplace_back(m * k);
    store.emplace_back(k * n);
    store.emplace_back(m * n, -1.0);
    for (std::size_t j = store.size() - 3; j < store.size() - 1; ++j)
      for (double& x : store[j])
        x = std::uniform_real_distribution<double>(-1, 1)(rng);
    sides.insert(sides.end(), {m, k, n});
  }
  for (int i = 0; i < 12; ++i) {
    const std::int64_t m = sides[3 * i], k = sides[3 * i + 1], n = sides[3 * i + 2];
    products.push_back({ArrayView(store[3 * i].data(), DType::float64, {m, k}),
                        ArrayView(store[3 * i + 1].data(), DType::float64, {k, n}),
                        MutableArrayView(store[3 * i + 2].data(), DType::float64, {m, n})});
  }
  std::vector<std::future<Report>> futures = pool.submit_many(products);
  REQUIRE(futures.size() == products.size());
  for (int i = 0; i < 12; ++i) {
    CAPTURE(i);
    const Report r = futures[i].get();
    CHECK(r.m == std::uint64_t(sides[3 * i]));
    CHECK(r.n == std::uint64_t(sides[3 * i + 2]));
    std::vector<double> want(store[3 * i + 2].size());
    MatmulOptions here;
    here.in_process = true;
    matmul_into(products[i].a, products[i].b,
                MutableArrayView(want.data(), DType::float64, products[i].out.shape()), here);
    double worst = 0;
    for (std::size_t e = 0; e < want.size(); ++e)
      worst = std::max(worst, std::abs(want[e] - store[3 * i + 2][e]));
    CHECK(worst < 1e-12);
  }
  // One bad product: named, and none submitted.
  const std::uint64_t jobs = pool.stats().jobs;
  std::vector<Pool::Product> bad = products;
  const std::int64_t k7 = sides[3 * 7 + 1], n7 = sides[3 * 7 + 2];
  std::vector<double> deeper((k7 + 1) * n7);
  bad[7].b = ArrayView(deeper.data(), DType::float64, {k7 + 1, n7});
  CHECK_THROWS_WITH_AS(pool.submit_many(bad), doctest::Contains("product 7: "), Error);
  CHECK(pool.stats().jobs == jobs);
  CHECK(clean_shm());
}

TEST_CASE("many threads submit at once: every result right, no growth of the arena") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    Pool pool(pool_options(launch));
    std::mt19937_64 rng(3);
    SharedMatrix<double> a = pool.alloc<double>(64, 48), b = pool.alloc<double>(48, 32);
    fill(a.view(), rng);
    fill(b.view(), rng);
    const test::Dense want = test::reference_product(dense(a.view()), dense(b.view()));
    const std::uint64_t used_before = pool.stats().arena_used_bytes;
    constexpr int kThreads = 4, kJobs = 300;
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        std::vector<double> out(64 * 32);
        std::vector<std::future<Report>> pending;
        for (int j = 0; j < kJobs; ++j) {
          // Alternate synchronous calls and batches of futures, into host memory (staged).
          MatrixView<double> c(out.data(), 64, 32);
          if ((j + t) % 2)
            pool.matmul(a.view(), b.view(), c);
          else
            pool.submit(a.view(), b.view(), c).get();
          if (test::max_rel_diff(dense(c), want) > test::tolerance(DType::float64, 48)) ++wrong;
        }
      });
    for (auto& th : threads)
      th.join();
    CHECK(wrong.load() == 0);
    const PoolStats s = pool.stats();
    CHECK(s.jobs == kThreads * kJobs);
    CHECK(s.failed_jobs == 0);
    CHECK(s.arena_used_bytes == used_before);
  }
  CHECK(clean_shm());
}

TEST_CASE("workers killed under load fail only their jobs; the pool replaces them and goes on") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    {
      ::setenv("SHMGEMM_TEST_FAULT", "1:stall", 1);  // worker 1 stalls holding its first task
      const std::string preload = test::fault_preload();
      ::setenv("LD_PRELOAD", preload.substr(preload.find('=') + 1).c_str(), 1);  // spawned ones
      Pool pool(pool_options(launch));
      ::unsetenv("SHMGEMM_TEST_FAULT");  // not for the replacements
      ::unsetenv("LD_PRELOAD");
      std::mt19937_64 rng(4);
      SharedMatrix<double> a = pool.alloc<double>(600, 600), b = pool.alloc<double>(600, 600),
                           c = pool.alloc<double>(600, 600);
      fill(a.view(), rng);
      fill(b.view(), rng);
      std::vector<std::future<Report>> jobs;
      for (int i = 0; i < 40; ++i)
        jobs.push_back(pool.submit(a.view(), b.view(), c.view()));
      // Then both workers are killed mid-run, once the stalled one holds its task (a loaded
      // machine may not have run it within any fixed delay); the other holds one perhaps.
      const std::vector<pid_t> workers = test::children_of(::getpid());
      REQUIRE(workers.size() == 2);
      REQUIRE(test::eventually([&] { return test::paused(workers[0]) || test::paused(workers[1]); },
                               10.0));
      for (pid_t w : workers)
        ::kill(w, SIGKILL);
      int ok = 0, failed = 0;
      for (auto& f : jobs) {
        try {
          f.get();
          ++ok;
        } catch (const Error& e) {
          CHECK(e.code() == ErrorCode::worker_failed);
          CHECK(std::string(e.what()).find("was killed by signal 9") != std::string::npos);
          ++failed;
        }
      }
      CHECK(failed >= 1);
      CHECK(failed <= 2);  // only the jobs they held
      CHECK(ok == 40 - failed);
      CHECK(test::eventually([&] { return pool.stats().workers_replaced == 2; }, 5.0));
      // It goes on, with a full set of workers.
      for (int i = 0; i < 5; ++i)
        pool.matmul(a.view(), b.view(), c.view());
      CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 600));
      CHECK(test::children_of(::getpid()).size() == 2);
    }
    CHECK(clean_shm());
    CHECK(test::children_of(::getpid()).empty());
  }
}

TEST_CASE("destroying the pool with jobs in flight: every future is answered, nothing is left") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    std::vector<std::future<Report>> jobs;
    // Operands in the arena, so that submitting is quick and the work queued (200 products,
    // 26 GFLOP) outlasts it by far, however fast the workers take tasks. They outlive the pool.
    std::optional<SharedMatrix<double>> a, c;
    {
      Pool pool(pool_options(launch));
      a = pool.alloc<double>(400, 400);
      c = pool.alloc<double>(400, 400);
      for (int i = 0; i < 200; ++i)
        jobs.push_back(pool.submit(a->view(), a->view(), c->view()));
    }  // the pool goes with most jobs still queued
    int done = 0, shut = 0;
    for (auto& f : jobs) {
      REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
      try {
        f.get();
        ++done;
      } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::shut_down);
        ++shut;
      }
    }
    CHECK(done + shut == 200);
    CHECK(shut > 0);
    CHECK(clean_shm());
    CHECK(test::children_of(::getpid()).empty());
  }
}

TEST_CASE("pool errors: shapes, a full arena, a shut pool") {
  Pool pool(pool_options(Launch::fork));
  std::vector<double> x(100);
  try {
    pool.submit(MatrixView<const double>(x.data(), 3, 4), MatrixView<const double>(x.data(), 5, 6),
                MatrixView<double>(x.data(), 3, 6));
    FAIL("mismatched shapes were accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::shape_mismatch);
    CHECK(std::string(e.what()) == "shapes (3,4) and (5,6) not aligned: 4 (dim 1) != 5 (dim 0)");
  }
  try {
    pool.alloc<double>(1 << 20, 1 << 10);  // 8 GiB in a 256 MiB arena
    FAIL("an allocation larger than the arena succeeded");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::resource);
    CHECK(std::string(e.what()).find("arena") != std::string::npos);
  }
}

TEST_CASE("pool.alloc refuses a size that overflows, and the pool's options are checked") {
  Pool pool(pool_options(Launch::fork));
  const std::uint64_t used = pool.stats().arena_used_bytes;
  for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{2147437309, 1073764994},
                                   {SIZE_MAX, 2},
                                   {SIZE_MAX / 4, 1}}) {
    CAPTURE(rows);
    CAPTURE(cols);
    try {
      pool.alloc<double>(rows, cols);
      FAIL("an overflowing size was accepted");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK(std::string(e.what()).find("overflow") != std::string::npos);
    }
  }
  CHECK(pool.stats().arena_used_bytes == used);  // nothing was allocated
  for (const auto& [field, set] :
       std::vector<std::pair<std::string, std::function<void(Options&)>>>{
           {"Options::workers", [](Options& o) { o.workers = 65; }},
           {"Options::rows_per_step", [](Options& o) { o.rows_per_step = 8; }},
           {"Options::copy_inputs", [](Options& o) { o.copy_inputs = true; }},
           {"Options::retries", [](Options& o) { o.retries = 1; }}}) {
    CAPTURE(field);
    Options o = pool_options(Launch::fork);
    set(o);
    try {
      Pool bad(o);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::invalid_argument);
      CHECK(std::string(e.what()).rfind(field, 0) == 0);
    }
  }
  CHECK(test::children_of(::getpid()).size() == pool.workers());
}

TEST_CASE("one-shot matmul on a pool's matrices: in place where workers can reach them") {
  std::mt19937_64 rng(8);
  for (Launch pool_launch : {Launch::fork, Launch::spawn}) {
    Pool pool(pool_options(pool_launch));
    SharedMatrix<double> a = pool.alloc<double>(50, 40), b = pool.alloc<double>(40, 30),
                         c = pool.alloc<double>(50, 30);
    fill(a.view(), rng);
    fill(b.view(), rng);
    for (Launch launch : {Launch::fork, Launch::spawn}) {
      CAPTURE(fmt::format("pool {} matmul {}", to_string(pool_launch), to_string(launch)));
      Options o;
      o.workers = 2;
      o.launch = launch;
      const Report r = matmul(a.view(), b.view(), c.view(), o);
      CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 40));
      // Forked workers inherit the arena, spawned ones map it through its descriptor: either
      // way no copy, whatever launch the pool itself uses.
      CHECK(r.copied_bytes == 0);
    }
  }
  CHECK(clean_shm());
}

TEST_CASE("a pool and its jobs never name memory in /dev/shm, not even for a moment") {
  // A SIGKILL while a name lives would leave it behind.
  std::mt19937_64 rng(7);
  const auto created = test::names_created_in("/dev/shm", [&] {
    for (const Launch launch : {Launch::fork, Launch::spawn}) {
      Pool pool(pool_options(launch));
      SharedMatrix<double> a = pool.alloc<double>(64, 64), b = pool.alloc<double>(64, 64),
                           c = pool.alloc<double>(64, 64);
      fill(a.view(), rng);
      fill(b.view(), rng);
      pool.matmul(a.view(), b.view(), c.view());
      CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 64));
    }
  });
  CHECK(created.empty());
}

TEST_CASE("a pool whose workers cannot start throws and leaves nothing behind, and does not hang") {
  // Each starts and exits at once without attaching: with a failure, and with status 0 (which
  // a pool worker never has before its pool stops).
  for (const char* exe : {"/bin/false", "/bin/true"}) {
    CAPTURE(exe);
    ::setenv("SHMGEMM_WORKER", exe, 1);
    try {
      Pool pool(pool_options(Launch::spawn));
      FAIL("a pool without workers started");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::worker_failed);
    }
    ::unsetenv("SHMGEMM_WORKER");
    CHECK(clean_shm());
    CHECK(test::children_of(::getpid()).empty());
  }
}

TEST_CASE("a pool job past Options::timeout fails with timed_out; its worker is replaced") {
  std::mt19937_64 rng(31);
  Options o = pool_options(Launch::fork);
  o.timeout = 0.5;
  // The first workers stall on every task (the fault is read at fork time); their
  // replacements, forked once the variable is gone, do not.
  ::setenv("SHMGEMM_TEST_FAULT", "all:stall", 1);
  Pool pool(o);
  ::unsetenv("SHMGEMM_TEST_FAULT");
  SharedMatrix<double> a = pool.alloc<double>(300, 200), b = pool.alloc<double>(200, 100),
                       c = pool.alloc<double>(300, 100);
  fill(a.view(), rng);
  fill(b.view(), rng);
  std::future<Report> f = pool.submit(a.view(), b.view(), c.view());
  REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  try {
    f.get();
    FAIL("a stalled job succeeded");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::timed_out);
    CHECK(std::string(e.what()).find("timed out after 0.5 s: pool worker") != std::string::npos);
  }
  CHECK(test::eventually([&] { return pool.stats().workers_replaced >= 1; }, 5.0));
  // The pool goes on with fresh workers.
  pool.matmul(a.view(), b.view(), c.view());
  CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 200));
}

TEST_CASE("a pool that cannot map its default arena (ulimit -v) throws and leaves nothing behind" *
          doctest::skip(test::kSanitized)) {
  // In a child, so that the limit binds no other test: the default arena is half of /dev/shm's
  // free space, more than 4 GB of address space allows where /dev/shm has 9 GB free.
  struct statvfs shm {};
  REQUIRE(::statvfs("/dev/shm", &shm) == 0);
  const double free_bytes = double(shm.f_bavail) * double(shm.f_frsize);
  if (free_bytes < 9e9)
    SKIP_CASE(fmt::format("/dev/shm has {:.1f} GB free: the default arena fits in 4 GB",
                          free_bytes / 1e9));
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    struct rlimit limit {
      std::uint64_t{4000000} * 1024, std::uint64_t{4000000} * 1024
    };
    ::setrlimit(RLIMIT_AS, &limit);
    char verdict = 'n';
    try {
      Pool pool(Options{});
      verdict = 'y';
    } catch (const Error& e) {
      // One line naming the arena and the reason, not the descriptor it was mapped through.
      const std::string what = e.what();
      const bool named = what.starts_with("pool: cannot map a ") &&
                         what.find("-byte arena: ") != std::string::npos &&
                         what.find("/proc/") == std::string::npos &&
                         what.ends_with(" (see PoolOptions::arena_bytes)");
      verdict = e.code() != ErrorCode::resource ? 'e' : named ? 'r' : 'm';
      if (!named) fmt::print(stderr, "the arena's message: {}\n", what);
    } catch (...) {
      verdict = 'x';
    }
    static_cast<void>(::write(pipe_fds[1], &verdict, 1));
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  char verdict = 0;
  CHECK(::read(pipe_fds[0], &verdict, 1) == 1);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CAPTURE(verdict);
  CHECK(verdict == 'r');
  CHECK(test::segments_of(child).empty());
}

TEST_CASE(
    "one failure, one code: in process, with fork and spawn workers, in a Pool, and in a set "
    "of products") {
  std::mt19937_64 rng(41);
  std::vector<double> a(400 * 300), b(300 * 200), c(400 * 200), wrong(7 * 5);
  for (auto* v : {&a, &b})
    for (double& x : *v)
      x = std::uniform_real_distribution<double>(-1, 1)(rng);
  const ArrayView av(a.data(), DType::float64, {400, 300}),
      bv(b.data(), DType::float64, {300, 200}), wv(wrong.data(), DType::float64, {7, 5});
  const MutableArrayView cv(c.data(), DType::float64, {400, 200});
  enum Path { in_process, fork_workers, spawn_workers, pool_fork, pool_spawn, many_fork };
  // The code of the failure that `fault` (SHMGEMM_TEST_FAULT, "" for none) causes on `path`,
  // multiplying a @ b, or a @ wrong with `mismatch`.
  auto code_in_process = [&](Path path, const std::string& fault, bool mismatch,
                             double timeout) -> std::optional<ErrorCode> {
    if (!fault.empty()) {
      ::setenv("SHMGEMM_TEST_FAULT", fault.c_str(), 1);
      const std::string preload = test::fault_preload();
      ::setenv("LD_PRELOAD", preload.substr(preload.find('=') + 1).c_str(), 1);
    }
    std::optional<ErrorCode> code;
    try {
      Options o;
      o.timeout = timeout;
      if (path == in_process) {
        o.in_process = true;
        matmul(av, mismatch ? wv : bv, cv, o);
      } else if (path == fork_workers || path == spawn_workers) {
        o.workers = 2;
        o.launch = path == fork_workers ? Launch::fork : Launch::spawn;
        matmul(av, mismatch ? wv : bv, cv, o);
      } else if (path == many_fork) {
        ManyOptions m;
        m.workers = 2;
        m.launch = Launch::fork;
        m.timeout = timeout;
        // Two products that share no work (b read in another order), so that each is one.
        const ArrayView other(b.data(), DType::float64, {300, 200}, {8, 300 * 8});
        const std::pair<ArrayView, ArrayView> pairs[] = {{av, bv}, {av, mismatch ? wv : other}};
        matmul_many(pairs, m);
      } else {
        Options po = pool_options(path == pool_fork ? Launch::fork : Launch::spawn);
        po.timeout = timeout;
        Pool pool(po);
        pool.matmul(av, mismatch ? wv : bv, cv);
      }
    } catch (const Error& e) {
      code = e.code();
    }
    ::unsetenv("SHMGEMM_TEST_FAULT");
    ::unsetenv("LD_PRELOAD");
    return code;
  };
  // Each in a child of its own that waits for whatever it started, so that nothing of a fault
  // outlives it (this test program may be its PID namespace's init, which adopts orphans).
  auto code_of = [&](Path path, const std::string& fault, bool mismatch,
                     double timeout) -> std::optional<ErrorCode> {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::prctl(PR_SET_CHILD_SUBREAPER, 1);
      const std::optional<ErrorCode> code = code_in_process(path, fault, mismatch, timeout);
      for (int i = 0; i < 500 && ::waitpid(-1, nullptr, WNOHANG) >= 0; ++i)
        ::usleep(10 * 1000);
      ::_exit(code ? static_cast<int>(*code) : 100);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    const int code = WEXITSTATUS(status);
    return code == 100 ? std::nullopt : std::optional<ErrorCode>(static_cast<ErrorCode>(code));
  };
  for (Path path : {in_process, fork_workers, spawn_workers, pool_fork, pool_spawn, many_fork}) {
    CAPTURE(int(path));
    // A bad operand: the same code on every path.
    CHECK(code_of(path, "", true, 0) == ErrorCode::shape_mismatch);
    if (path == in_process) continue;  // the faults below happen in workers
    // A worker's own Error keeps its code; a killed worker is a failed worker; a stalled one
    // times out.
    CHECK(code_of(path, "all:throw", false, 0) == ErrorCode::internal);
    CHECK(code_of(path, "all:kill", false, 0) == ErrorCode::worker_failed);
    CHECK(code_of(path, "all:stall", false, 0.5) == ErrorCode::timed_out);
  }
  // In process, a timeout that passes is timed_out too: a product of several steps, each
  // longer than the limit.
  std::vector<double> big(3000 * 3000, 1.0), big_c(3000 * 3000);
  const ArrayView bigv(big.data(), DType::float64, {3000, 3000});
  const MutableArrayView big_cv(big_c.data(), DType::float64, {3000, 3000});
  Options o;
  o.in_process = true;
  o.timeout = 1e-3;
  try {
    matmul(bigv, bigv, big_cv, o);
    FAIL("the product outlived its timeout");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::timed_out);
  }
}

// Last in this file: it installs the interrupt handlers for the rest of the process.
TEST_CASE("an interrupt stops the call in progress, never the pool nor the calls after it") {
  handle_interrupts();
  std::mt19937_64 rng(30);
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    Pool pool(pool_options(launch));
    SharedMatrix<double> a = pool.alloc<double>(300, 200), b = pool.alloc<double>(200, 100),
                         c = pool.alloc<double>(300, 100);
    fill(a.view(), rng);
    fill(b.view(), rng);
    ::raise(SIGINT);
    // The pool goes on with the workers it has: none killed, none replaced, jobs finish.
    for (int i = 0; i < 3; ++i) {
      pool.matmul(a.view(), b.view(), c.view());
      CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 200));
    }
    CHECK(pool.stats().workers_replaced == 0);
    CHECK(test::children_of(::getpid()).size() == pool.workers());

    // A one-shot call after the interrupt runs as usual.
    std::vector<double> out(300 * 100);
    Options o;
    o.workers = 2;
    o.launch = launch;
    MatrixView<double> host_c(out.data(), 300, 100);
    matmul(a.view(), b.view(), host_c, o);
    CHECK(error_of(a.view(), b.view(), host_c) <= test::tolerance(DType::float64, 200));

    // An interrupt during a call stops that call (its workers stall until killed), only it.
    ::setenv("SHMGEMM_TEST_FAULT", "all:stall", 1);
    const std::string preload = test::fault_preload();
    ::setenv("LD_PRELOAD", preload.substr(preload.find('=') + 1).c_str(), 1);  // spawned workers
    std::thread later([] {
      ::usleep(300 * 1000);
      ::kill(::getpid(), SIGTERM);
    });
    const auto t0 = std::chrono::steady_clock::now();
    try {
      matmul(a.view(), b.view(), host_c, o);
      FAIL("a stalled call returned");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::interrupted);
      CHECK(std::string(e.what()).find("SIGTERM") != std::string::npos);
    }
    later.join();
    ::unsetenv("SHMGEMM_TEST_FAULT");
    ::unsetenv("LD_PRELOAD");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    CHECK(test::children_of(::getpid()).size() == pool.workers());  // the call's workers: gone
    pool.matmul(a.view(), b.view(), c.view());
    CHECK(error_of(a.view(), b.view(), c.view()) <= test::tolerance(DType::float64, 200));
    std::fill(out.begin(), out.end(), 0.0);
    matmul(a.view(), b.view(), host_c, o);
    CHECK(error_of(a.view(), b.view(), host_c) <= test::tolerance(DType::float64, 200));
  }
  CHECK(clean_shm());
}

TEST_CASE("every call on a closed pool throws Error(shut_down); arrays made before stay valid") {
  Pool pool(pool_options(Launch::fork, 1));
  SharedMatrix<double> a = pool.alloc<double>(8, 8);
  a.view()(0, 0) = 3;
  pool.close();
  CHECK(pool.closed());
  pool.close();  // again: nothing
  std::vector<double> x(64, 1.0), y(64);
  const MatrixView<const double> xv(x.data(), 8, 8);
  const MatrixView<double> yv(y.data(), 8, 8);
  const ArrayView av(x.data(), DType::float64, {8, 8});
  const MutableArrayView out(y.data(), DType::float64, {8, 8});
  const std::pair<const char*, std::function<void()>> calls[] = {
      {"matmul", [&] { pool.matmul(av, av, out); }},
      {"submit", [&] { pool.submit(av, av, out); }},
      {"matmul(MatrixView)", [&] { pool.matmul(xv, xv, yv); }},
      {"submit(MatrixView)", [&] { pool.submit(xv, xv, yv); }},
      {"alloc<double>", [&] { pool.alloc<double>(2, 2); }},
      {"alloc(DType)", [&] { pool.alloc(DType::int32, {2}); }},
      {"workers", [&] { static_cast<void>(pool.workers()); }},
      {"stats", [&] { static_cast<void>(pool.stats()); }},
  };
  for (const auto& [name, call] : calls) {
    CAPTURE(name);
    try {
      call();
      FAIL("a closed pool took the call");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::shut_down);
      CHECK(std::string(e.what()) == "the pool is closed");
    }
  }
  CHECK(a.view()(0, 0) == 3);
  CHECK(clean_shm());
}

TEST_CASE("a pool in a forked child: every call throws there, and the parent's pool goes on") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    auto pool = std::make_unique<Pool>(pool_options(launch));
    std::optional<SharedMatrix<double>> block(pool->alloc<double>(100, 100));
    std::vector<double> x(100 * 100, 1.0), y(100 * 100);
    const MatrixView<const double> xv(x.data(), 100, 100);
    const MatrixView<double> yv(y.data(), 100, 100);
    pool->matmul(xv, xv, yv);
    // In the child: a call, freeing a block, closing and destroying the pool, exiting normally.
    for (const char* how : {"call", "free a block", "close", "destroy", "exit"}) {
      CAPTURE(how);
      const pid_t parent = ::getpid();
      const pid_t child = ::fork();
      if (child == 0) {
        const std::string h = how;
        int code = 0;
        if (h == "call") {
          try {
            pool->matmul(xv, xv, yv);
            code = 1;
          } catch (const Error& e) {
            const std::string expected = fmt::format("this Pool belongs to process {}", parent);
            code = e.code() == ErrorCode::wrong_process &&
                           std::string(e.what()).find(expected) != std::string::npos
                       ? 0
                       : 2;
          }
        } else if (h == "free a block") {
          block.reset();
        } else if (h == "close") {
          pool->close();
        } else if (h == "destroy") {
          block.reset();
          pool.reset();
        }
        if (h == "exit") {
          forked_child = true;  // no leak check in it (see __lsan_is_turned_off)
          std::exit(0);         // static destructors and atexit handlers run
        }
        ::_exit(code);
      }
      int status = 0;
      REQUIRE(::waitpid(child, &status, 0) == child);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
      std::fill(y.begin(), y.end(), 0.0);
      pool->matmul(xv, xv, yv);
      CHECK(y[0] == 100.0);
      CHECK(pool->stats().failed_jobs == 0);
      CHECK(pool->stats().workers_replaced == 0);
    }
    // The block freed in the children is the parent's still.
    block->view()(99, 99) = 1;
    block.reset();
    pool.reset();
    CHECK(clean_shm());
  }
}

TEST_CASE(
    "JobControl: a job cancelled before it starts never runs; one stopped while it runs "
    "ends at once, its workers replaced, and the pool goes on") {
  for (Launch launch : {Launch::fork, Launch::spawn}) {
    CAPTURE(to_string(launch));
    Options o = pool_options(launch, 1);
    o.threads_per_worker = 1;
    o.pool_bytes = std::size_t{1} << 30;  // room to stage two jobs of 150 MB
    Pool pool(o);
    const std::size_t n = 2500;
    std::vector<double> a(n * n, 1.0), c1(n * n), c2(n * n), c3(n * n);
    const ArrayView av(a.data(), DType::float64, {std::int64_t(n), std::int64_t(n)});
    auto out = [&](std::vector<double>& c) {
      return MutableArrayView(c.data(), DType::float64, {std::int64_t(n), std::int64_t(n)});
    };
    // The one worker takes the first job; the second waits in the queue, and is cancelled.
    std::stop_source stop_first, cancel_second, cancel_first;
    std::future<Report> first =
        pool.submit(av, av, out(c1), {}, {cancel_first.get_token(), stop_first.get_token()});
    // The worker has taken it once it computes (its CPU time grows).
    const std::vector<pid_t> workers = test::children_of(::getpid());
    REQUIRE(workers.size() == 1);
    const long idle = cpu_ticks(workers[0]);
    REQUIRE(test::eventually([&] { return cpu_ticks(workers[0]) >= idle + 3; }, 20.0));
    std::future<Report> second = pool.submit(av, av, out(c2), {}, {cancel_second.get_token(), {}});
    cancel_second.request_stop();
    REQUIRE(second.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    try {
      second.get();
      FAIL("a cancelled job ran");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::cancelled);
    }
    // Cancelling a job that runs does nothing: it goes on.
    cancel_first.request_stop();
    CHECK(first.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
    // Stopping it ends it within moments, once its worker is gone.
    const auto t0 = std::chrono::steady_clock::now();
    stop_first.request_stop();
    REQUIRE(first.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200));
    try {
      first.get();
      FAIL("a stopped job finished");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::interrupted);
    }
    CHECK(std::all_of(c2.begin(), c2.end(), [](double x) { return x == 0.0; }));
    // A stop requested while its operands are staged (here: before) ends the staging.
    std::stop_source early;
    early.request_stop();
    CHECK_THROWS_WITH_AS(pool.submit(av, av, out(c2), {}, {{}, early.get_token()}),
                         "stopped on request while its operands were staged", Error);
    // The pool goes on, with a new worker.
    const Report r = pool.matmul(av, av, out(c3));
    CHECK(c3[0] == double(n));
    CHECK(r.workers == 1);
    CHECK(pool.stats().workers_replaced >= 1);
    CHECK(pool.stats().failed_jobs == 1);  // the stopped one; the cancelled one never ran
  }
  CHECK(clean_shm());
}
