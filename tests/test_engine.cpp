#include <doctest/doctest.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <thread>
#include <vector>

#include "common/mapping.hpp"
#include "common/npy_file.hpp"
#include "engine/interrupt.hpp"
#include "engine/launcher.hpp"
#include "shmgemm/shmgemm.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::TempDir;

namespace {

struct Shape {
  std::uint64_t m, k, n;
};

// Small and awkward shapes: m below the worker count, unit dimensions, primes.
const Shape kShapes[] = {{1, 1, 1},   {1, 5, 7},    {7, 5, 1},    {5, 1, 7},
                         {2, 3, 4},   {3, 100, 2},  {13, 29, 8},  {33, 17, 65},
                         {128, 1, 3}, {64, 64, 64}, {97, 89, 101}};

std::string describe(const Shape& s, DType dtype, const Options& o) {
  return fmt::format("{}x{}x{} {} workers={} launch={} backing={}", s.m, s.k, s.n,
                     dtype_name(dtype), o.workers, to_string(o.launch), to_string(o.backing));
}

}  // namespace

TEST_CASE("the engine matches a naive product: every launch, backing, dtype, worker count") {
  TempDir tmp;
  std::mt19937_64 rng(2024);
  int variant = 0;
  for (DType dtype : {DType::float64, DType::float32}) {
    for (const Shape& s : kShapes) {
      const test::Dense a = test::random_dense(s.m, s.k, rng);
      const test::Dense b = test::random_dense(s.k, s.n, rng);
      const test::Dense want = test::reference_product(a, b);
      // Operands in every header version and both orders, in turn.
      ++variant;
      test::write_file(tmp / "A.npy", test::npy_bytes(a, dtype, variant % 2 == 0, 1 + variant % 3));
      test::write_file(tmp / "B.npy", test::npy_bytes(b, dtype, variant % 3 == 0, 1 + variant % 2));
      for (Launch launch : {Launch::fork, Launch::spawn}) {
        for (Backing backing : {Backing::file, Backing::shm}) {
          for (unsigned workers : {1u, 2u, 3u, 5u}) {
            Options o;
            o.workers = workers;
            o.launch = launch;
            o.backing = backing;
            CAPTURE(describe(s, dtype, o));
            const Report r = multiply_npy(tmp / "A.npy", tmp / "B.npy", tmp / "C.npy", o);
            CHECK(r.workers == std::min<std::uint64_t>(workers, s.m));
            CHECK(r.m == s.m);
            CHECK(r.k == s.k);
            CHECK(r.n == s.n);
            CHECK(r.dtype == dtype_name(dtype));
            const NpyMapping out = NpyMapping::open(tmp / "C.npy");
            CHECK(out.header().dtype == dtype);
            CHECK(!out.header().fortran_order);
            CHECK(test::max_rel_diff(test::read_npy(tmp / "C.npy"), want) <=
                  test::tolerance(dtype, s.k));
            CHECK(test::segments_of(::getpid()).empty());
          }
        }
      }
    }
  }
}

TEST_CASE("--inputs copy: each worker's private copies give the same product") {
  TempDir tmp;
  std::mt19937_64 rng(31);
  for (const Shape& s : {Shape{97, 89, 101}, Shape{5, 1, 7}, Shape{33, 17, 65}}) {
    const test::Dense a = test::random_dense(s.m, s.k, rng), b = test::random_dense(s.k, s.n, rng);
    test::write_file(tmp / "A.npy", test::npy_bytes(a, DType::float64, /*fortran=*/true));
    test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::float64));
    for (Launch launch : {Launch::fork, Launch::spawn}) {
      Options o;
      o.workers = 3;
      o.launch = launch;
      o.copy_inputs = true;
      CAPTURE(describe(s, DType::float64, o));
      multiply_npy(tmp / "A.npy", tmp / "B.npy", tmp / "C.npy", o);
      CHECK(test::max_rel_diff(test::read_npy(tmp / "C.npy"), test::reference_product(a, b)) <=
            test::tolerance(DType::float64, s.k));
      CHECK(test::segments_of(::getpid()).empty());
    }
  }
}

TEST_CASE("degenerate shapes: empty results, and zeros when k = 0") {
  TempDir tmp;
  std::mt19937_64 rng(5);
  for (const Shape& s : {Shape{0, 3, 4}, Shape{3, 0, 4}, Shape{3, 4, 0}}) {
    CAPTURE(fmt::format("{}x{}x{}", s.m, s.k, s.n));
    test::write_file(tmp / "A.npy",
                     test::npy_bytes(test::random_dense(s.m, s.k, rng), DType::float64));
    test::write_file(tmp / "B.npy",
                     test::npy_bytes(test::random_dense(s.k, s.n, rng), DType::float64));
    const Report r = multiply_npy(tmp / "A.npy", tmp / "B.npy", tmp / "C.npy");
    CHECK(r.workers == 0);
    const test::Dense c = test::read_npy(tmp / "C.npy");
    CHECK(c.rows == s.m);
    CHECK(c.cols == s.n);
    for (double x : c.v)
      CHECK(x == 0.0);
  }
}

TEST_CASE("the plan: automatic by default, fixed when asked, workers x threads within cores") {
  TempDir tmp;
  std::mt19937_64 rng(9);
  test::write_file(tmp / "A.npy", test::npy_bytes(test::random_dense(40, 8, rng), DType::float64));
  test::write_file(tmp / "B.npy", test::npy_bytes(test::random_dense(8, 8, rng), DType::float64));
  // A tiny product: the automatic plan keeps it in process, and says why.
  const Report automatic = multiply_npy(tmp / "A.npy", tmp / "B.npy", tmp / "C.npy");
  CHECK(automatic.automatic);
  CHECK(automatic.in_process);
  CHECK(automatic.workers == 0);
  CHECK(automatic.candidates.size() == 1 + std::min(40u, available_cores()));
  CHECK(!automatic.plan_reason.empty());
  CHECK(!automatic.calibration.empty());
  // Asked for workers: as many as asked (capped at m), threads within the cores.
  Options fixed;
  fixed.workers = available_cores();
  const Report r = multiply_npy(tmp / "A.npy", tmp / "B.npy", tmp / "D.npy", fixed);
  CHECK(!r.automatic);
  CHECK(r.workers == std::min(40u, available_cores()));
  CHECK(r.workers * r.threads_per_worker <= available_cores());
  CHECK(test::max_rel_diff(test::read_npy(tmp / "C.npy"), test::read_npy(tmp / "D.npy")) <=
        test::tolerance(DType::float64, 8));
}

TEST_CASE("a spawn run with a worker executable that is not there fails cleanly") {
  TempDir tmp;
  std::mt19937_64 rng(3);
  test::write_file(tmp / "A.npy", test::npy_bytes(test::random_dense(4, 4, rng), DType::float64));
  Options o;
  o.launch = Launch::spawn;
  o.workers = 2;
  ::setenv("SHMGEMM_WORKER", (tmp / "no-such-worker").c_str(), 1);
  try {
    multiply_npy(tmp / "A.npy", tmp / "A.npy", tmp / "C.npy", o);
    FAIL("ran without a worker executable");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("SHMGEMM_WORKER=") == 0);
  }
  ::unsetenv("SHMGEMM_WORKER");
  CHECK(!std::filesystem::exists(tmp / "C.npy"));
  CHECK(test::segments_of(::getpid()).empty());
}

TEST_CASE("one-thread fork workers run alone: no OpenBLAS thread pool beside them") {
  // OpenBLAS shuts its thread pool down before a fork; a worker that restarted it would run a
  // spinning pool thread beside its product, on the other worker's core.
  const std::size_t s = 1500;
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> a(s * s), c(s * s), d(s * s);
  for (double& x : a)
    x = u(rng);
  std::atomic<bool> running{true};
  std::atomic<int> seen{0}, most{0};
  std::thread watcher([&] {
    const std::string children = fmt::format("/proc/{0}/task/{0}/children", ::getpid());
    while (running.load()) {
      std::ifstream list(children);
      for (pid_t child; list >> child;) {
        const int tasks = static_cast<int>(test::threads_of(child).size());
        if (tasks > 0) {
          seen.fetch_add(1);
          most.store(std::max(most.load(), tasks));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  Options o;
  o.workers = 2;
  o.threads_per_worker = 1;
  o.launch = Launch::fork;
  const Report r =
      matmul(MatrixView<const double>(a.data(), s, s), MatrixView<const double>(a.data(), s, s),
             MatrixView<double>(c.data(), s, s), o);
  running.store(false);
  watcher.join();
  CHECK(r.workers == 2);
  REQUIRE(seen.load() > 0);  // the watcher saw the workers computing
  CHECK(most.load() == 1);
  Options in;
  in.in_process = true;
  matmul(MatrixView<const double>(a.data(), s, s), MatrixView<const double>(a.data(), s, s),
         MatrixView<double>(d.data(), s, s), in);
  double worst = 0;
  for (std::size_t i = 0; i < c.size(); ++i)
    worst = std::max(worst, std::abs(c[i] - d[i]));
  CHECK(worst <= 1e-12 * double(s));  // another split of the sums, the same product
}

// --- Process: the one way shmgemm starts and supervises a process -----------------------------

namespace {

std::atomic<int> g_fork_handlers{0};

bool is_our_child(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

}  // namespace

TEST_CASE(
    "Process::spawn: the environment given, output where asked, the status, and no fork "
    "handler runs") {
  static const int registered = ::pthread_atfork([] { ++g_fork_handlers; }, nullptr, nullptr);
  REQUIRE(registered == 0);
  const Fd out = memory_file("test-out", 0, "stdout");
  const Fd err = memory_file("test-err", 0, "stderr");
  // A variable this process has is replaced, once.
  REQUIRE(::setenv("SHMGEMM_TEST_X", "before", 1) == 0);
  detail::Command command{
      "/bin/sh",
      {"-c", "echo \"$SHMGEMM_TEST_X\"; env | grep -c ^SHMGEMM_TEST_X=; echo to-err >&2; exit 3"},
      {{"SHMGEMM_TEST_X", "42"}}};
  command.stdout_fd = out.get();
  command.stderr_fd = err.get();
  const int before = g_fork_handlers.load();
  detail::Process p = detail::Process::spawn(command, "sh");
  // vfork: OpenBLAS's fork handler (blas_thread_shutdown_) would run where fork()'s do.
  CHECK(g_fork_handlers.load() == before);
  CHECK(p.pid() > 0);
  CHECK(p.join() == 3);
  CHECK(p.reaped());
  ::unsetenv("SHMGEMM_TEST_X");
  CHECK(file_contents(out) == "42\n1\n");
  CHECK(file_contents(err) == "to-err\n");
  // Where fork() runs them, the counter counts: the check above could fail.
  CHECK(detail::Process::fork([] { return 5; }, "child").join() == 5);
  CHECK(g_fork_handlers.load() == before + 1);
}

TEST_CASE(
    "a Process dropped while it runs is killed and reaped; one killed by a signal reports "
    "128 + N") {
  pid_t pid = 0;
  {
    const detail::Process p = detail::Process::spawn({"/bin/sleep", {"300"}, {}}, "sleep");
    pid = p.pid();
    CHECK(is_our_child(pid));
  }
  CHECK_FALSE(is_our_child(pid));
  CHECK(::kill(pid, 0) != 0);
  detail::Process p = detail::Process::spawn({"/bin/sleep", {"300"}, {}}, "sleep");
  p.signal(SIGTERM);
  CHECK(p.join() == 128 + SIGTERM);
}

TEST_CASE("a program that cannot start: Error(resource) naming it, and no child left behind") {
  try {
    detail::Process::spawn({"/nonexistent/program", {}, {}}, "the program");
    FAIL("spawned what does not exist");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::resource);
    CHECK(std::string(e.what()).rfind("cannot start the program: ", 0) == 0);
  }
  siginfo_t info{};
  errno = 0;
  CHECK(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1);
  CHECK(errno == ECHILD);
}

TEST_CASE("a stopped Process is seen as stopped, and a deadline ends join() with it killed") {
  detail::Process p = detail::Process::spawn({"/bin/sleep", {"300"}, {}}, "sleep");
  p.signal(SIGSTOP);
  for (int i = 0; i < 500 && p.stop_signal() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(p.stop_signal() == SIGSTOP);
  const pid_t pid = p.pid();
  const detail::StopScope deadline(0.2);
  try {
    p.join(50);
    FAIL("join outlived its deadline");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::timed_out);
  }
  CHECK(p.reaped());
  CHECK(WIFSIGNALED(p.status()));
  CHECK_FALSE(is_our_child(pid));
}

TEST_CASE("a spawned Process dies with the thread that started it") {
  const Fd pid_file = memory_file("test-pid", 0, "the grandchild's pid");
  const int fd = pid_file.get();
  // Orphans come here, to be waited for.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  // A child that spawns a long sleep, says its pid, and ends without waiting for it.
  CHECK(
      detail::Process::fork(
          [fd]() -> int {
            detail::Process sleeper = detail::Process::spawn({"/bin/sleep", {"300"}, {}}, "sleep");
            const std::string pid = std::to_string(sleeper.pid());
            static_cast<void>(::pwrite(fd, pid.data(), pid.size(), 0));
            ::_exit(0);  // no destructor: the sleeper is not killed by its Process
          },
          "parent")
          .join() == 0);
  const pid_t sleeper = std::stoi(file_contents(pid_file));
  REQUIRE(sleeper > 0);
  // Orphaned, it was killed (PR_SET_PDEATHSIG), not left sleeping.
  int status = 0;
  CHECK(test::eventually([&] { return ::waitpid(sleeper, &status, WNOHANG) == sleeper; }, 5.0));
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  if (!WIFSIGNALED(status)) ::kill(sleeper, SIGKILL);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}
