// Faults caused for real: workers that crash or are killed, a coordinator killed mid-run,
// interrupts, retries, a corrupted job descriptor, leftovers for `shmgemm gc`, and (as root)
// a /dev/shm and an output disk that are too small.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <algorithm>

#include <fmt/format.h>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "common/job.hpp"
#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "tests/job_fixture.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
using test::contains;
using test::count_lines;
using test::names_in;
using test::TempDir;

namespace {

// Our names in /dev/shm (other programs' segments, Open MPI's among them, come and go).
std::vector<std::string> shmgemm_names() {
  std::vector<std::string> ours;
  for (const std::string& name : names_in("/dev/shm"))
    if (name.rfind("shmgemm-", 0) == 0) ours.push_back(name);
  return ours;
}

// Runs with an injected fault. Under AddressSanitizer (make sanitize), a deliberate SIGSEGV
// must stay a SIGSEGV rather than become ASan's report; elsewhere this setting does nothing.
// The fault hook exists only in the test library, preloaded (AddressSanitizer must then be told
// that its runtime is not first in the list).
std::vector<std::string> fault_env(const std::string& spec) {
  return {"SHMGEMM_TEST_FAULT=" + spec, test::fault_preload(),
          "ASAN_OPTIONS=handle_segv=0:detect_leaks=0:verify_asan_link_order=0"};
}

// shmgemm multiply A.npy B.npy -o C.npy in `tmp`, on 2 workers launched as `launch`.
std::vector<std::string> multiply_argv(const TempDir& tmp, const std::string& launch,
                                       std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {test::cli_path(),
                                   "multiply",
                                   (tmp / "A.npy").string(),
                                   (tmp / "B.npy").string(),
                                   "-o",
                                   (tmp / "C.npy").string(),
                                   "--workers",
                                   "2",
                                   "--launch",
                                   launch};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// A folder with A (300x200) and B (200x100), and a C.npy that a failed run must not touch.
struct Operands {
  TempDir tmp;
  test::Dense a, b;
  Operands() {
    std::mt19937_64 rng(21);
    a = test::random_dense(300, 200, rng);
    b = test::random_dense(200, 100, rng);
    test::write_file(tmp / "A.npy", test::npy_bytes(a, DType::float64));
    test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::float64));
    test::write_file(tmp / "C.npy", "the previous result");
  }
  std::vector<std::string> multiply(const std::string& launch,
                                    std::vector<std::string> extra = {}) const {
    return multiply_argv(tmp, launch, std::move(extra));
  }
  // What every failed run must leave: C.npy as it was, no new file, no segment.
  void check_untouched(pid_t coordinator) const {
    CHECK(test::read_file(tmp / "C.npy") == "the previous result");
    CHECK(names_in(tmp.path()) == std::vector<std::string>{"A.npy", "B.npy", "C.npy"});
    CHECK(test::segments_of(coordinator).empty());
  }
  void check_result(const std::string& name = "C.npy") const {
    CHECK(test::max_rel_diff(test::read_npy(tmp / name), test::reference_product(a, b)) <=
          test::tolerance(DType::float64, 200));
  }
};

// Starts a run whose workers all stall before computing, and waits until they have started
// (and, for spawn, attached: the names are gone) and reached the stall. Returns the worker pids.
std::vector<pid_t> start_stalled(const test::Process& p, std::size_t workers) {
  std::vector<pid_t> kids;
  const bool ready = test::eventually(
      [&] {
        kids = test::children_of(p.pid());
        return kids.size() == workers && test::segments_of(p.pid()).empty() &&
               std::all_of(kids.begin(), kids.end(), test::paused);
      },
      10.0);
  REQUIRE(ready);
  return kids;
}

}  // namespace

TEST_CASE("a worker that crashes fails the run at once, cleanly, naming it and its rows") {
  Operands ops;
  const std::vector<std::pair<std::string, std::string>> faults = {
      {"kill", "was killed by signal 9"},
      {"segv", "was killed by signal 11"},
      {"abort", "was killed by signal 6"},
      {"exit", "failed: injected fault (test hook)"}};
  for (const char* launch : {"fork", "spawn"}) {
    for (const auto& [action, expect] : faults) {
      CAPTURE(launch);
      CAPTURE(action);
      const test::RunResult r = test::run(ops.multiply(launch), fault_env("1:" + action));
      CAPTURE(r.err);
      CHECK(r.status == 1);
      CHECK(count_lines(r.err) == 1);
      CHECK(contains(r.err, "shmgemm: worker 1 (rows 150-299) " + expect));
      ops.check_untouched(r.pid);
    }
  }
}

TEST_CASE("a worker killed from outside mid-run: noticed at once, the others stopped") {
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    test::Process p(ops.multiply(launch), fault_env("all:stall"));
    const std::vector<pid_t> workers = start_stalled(p, 2);
    const auto t0 = std::chrono::steady_clock::now();
    ::kill(workers[0], SIGKILL);
    const test::RunResult r = p.wait();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(r.err);
    CHECK(seconds < 1.0);  // through the worker's exit, not a timeout
    CHECK(r.status == 1);
    CHECK(std::regex_search(r.err,
                            std::regex(R"(worker [01] \(rows \d+-\d+\) was killed by signal 9)")));
    for (pid_t w : workers)
      CHECK(test::has_exited(w));
    ops.check_untouched(r.pid);
  }
}

TEST_CASE("the coordinator killed mid-run: every worker exits within a second, nothing left") {
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    for (const char* backing : {"file", "shm"}) {
      CAPTURE(launch);
      CAPTURE(backing);
      test::Process p(ops.multiply(launch, {"--backing", backing}), fault_env("all:stall"));
      const std::vector<pid_t> workers = start_stalled(p, 2);
      ::kill(p.pid(), SIGKILL);
      const test::RunResult r = p.wait();
      CHECK(r.status == 128 + SIGKILL);
      CHECK(test::eventually(
          [&] { return std::all_of(workers.begin(), workers.end(), test::has_exited); }, 1.0));
      ops.check_untouched(r.pid);
    }
  }
}

TEST_CASE("SIGINT and SIGTERM stop the run: workers killed, exit 130 or 143, nothing left") {
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    for (int sig : {SIGINT, SIGTERM}) {
      CAPTURE(launch);
      CAPTURE(sig);
      test::Process p(ops.multiply(launch), fault_env("all:stall"));
      const std::vector<pid_t> workers = start_stalled(p, 2);
      ::kill(p.pid(), sig);
      const test::RunResult r = p.wait();
      CAPTURE(r.err);
      CHECK(r.status == 128 + sig);
      CHECK(count_lines(r.err) == 1);
      CHECK(contains(r.err, sig == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM"));
      for (pid_t w : workers)
        CHECK(test::has_exited(w));
      ops.check_untouched(r.pid);
    }
  }
}

TEST_CASE("--retries recomputes a failed block in a fresh worker, and says so") {
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    // Worker 1 dies on its first attempt only: one retry saves the run.
    test::RunResult r = test::run(ops.multiply(launch, {"--retries", "1"}), fault_env("1:kill:1"));
    CAPTURE(r.err);
    CHECK(r.status == 0);
    CHECK(r.err == "shmgemm: worker 1 (rows 150-299) was killed by signal 9; retrying (1 of 1)\n");
    ops.check_result();
    CHECK(test::segments_of(r.pid).empty());
    test::write_file(ops.tmp / "C.npy", "the previous result");

    // It dies every time: two retries, then the run fails.
    r = test::run(ops.multiply(launch, {"--retries", "2"}), fault_env("1:segv"));
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 3);
    CHECK(contains(r.err, "retrying (1 of 2)"));
    CHECK(contains(r.err, "retrying (2 of 2)"));
    CHECK(contains(r.err, "shmgemm: worker 1 (rows 150-299) was killed by signal 11\n"));
    ops.check_untouched(r.pid);
  }
}

TEST_CASE("an integer product's three phases run on one launch of each worker, retries too") {
  // Values near 2^40: exact only through limbs, so the workers scan A and B, prepare B's limbs,
  // then multiply; between the phases they wait instead of exiting.
  TempDir tmp;
  std::mt19937_64 rng(40);
  std::uniform_int_distribution<std::int64_t> value(-(std::int64_t{1} << 40),
                                                    std::int64_t{1} << 40);
  test::Dense a{120, 70, {}}, b{70, 50, {}};
  for (test::Dense* x : {&a, &b})
    for (std::uint64_t e = 0; e < x->rows * x->cols; ++e)
      x->v.push_back(static_cast<double>(value(rng)));
  test::write_file(tmp / "A.npy", test::npy_bytes(a, DType::int64));
  test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::int64));
  auto check_exact = [&] {
    const NpyMapping c = NpyMapping::open(tmp / "C.npy");
    REQUIRE(c.header().dtype == DType::int64);
    const auto* got = reinterpret_cast<const std::int64_t*>(c.data());
    std::size_t wrong = 0;
    for (std::uint64_t i = 0; i < a.rows; ++i)
      for (std::uint64_t j = 0; j < b.cols; ++j) {
        std::uint64_t sum = 0;  // numpy's int64 product wraps modulo 2^64
        for (std::uint64_t l = 0; l < a.cols; ++l)
          sum += static_cast<std::uint64_t>(static_cast<std::int64_t>(a.at(i, l))) *
                 static_cast<std::uint64_t>(static_cast<std::int64_t>(b.at(l, j)));
        wrong += static_cast<std::uint64_t>(got[i * b.cols + j]) != sum ? 1 : 0;
      }
    CHECK(wrong == 0);
  };
  auto argv = [&](const char* launch, std::vector<std::string> extra) {
    extra.emplace_back("--json");
    return multiply_argv(tmp, launch, std::move(extra));
  };
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    test::RunResult r = test::run(argv(launch, {}));
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    nlohmann::json report = nlohmann::json::parse(r.out);
    CHECK(report["limb_products"].get<unsigned>() > 1);
    CHECK(report["prepared_bytes"].get<std::uint64_t>() > 0);
    CHECK(report["launches"] == 2);
    check_exact();
    std::filesystem::remove(tmp / "C.npy");

    // Worker 1 dies in the first phase: one fresh worker takes its rows from that phase on.
    r = test::run(argv(launch, {"--retries", "1"}), fault_env("1:kill:1"));
    CHECK(r.status == 0);
    report = nlohmann::json::parse(r.out);
    CHECK(report["retries"] == 1);
    CHECK(report["launches"] == 3);
    check_exact();
    CHECK(test::segments_of(r.pid).empty());
    std::filesystem::remove(tmp / "C.npy");

    // A worker slow to look for its next phase once its slot says done: it still finds it.
    r = test::run(argv(launch, {}), fault_env("1:dawdle"));
    CAPTURE(r.err);
    CHECK(r.status == 0);
    check_exact();
    std::filesystem::remove(tmp / "C.npy");

    // Workers that never exit after their last phase: the product is whole, and kept.
    r = test::run(argv(launch, {"--timeout", "1"}), fault_env("all:linger"));
    CHECK(r.status == 0);
    check_exact();
    CHECK(test::children_of(r.pid).empty());
    std::filesystem::remove(tmp / "C.npy");
  }
}

TEST_CASE("shmgemm-worker refuses a corrupted job descriptor without reading out of bounds") {
  auto run_worker_on = [](const std::function<void(JobDescriptor&)>& corrupt,
                          std::size_t bytes = sizeof(JobDescriptor)) {
    SharedSegment seg = SharedSegment::create("job", bytes);
    if (bytes >= sizeof(JobDescriptor)) {
      auto* job = new (seg.data()) JobDescriptor{};
      test::fill_valid_job(*job, 4, 4, 4, 1, "shmgemm-0-0-x-none");
      job->coordinator_pid = ::getpid();  // this test is the worker's parent
      corrupt(*job);
    } else {
      std::memset(seg.data(), 0xAB, bytes);
    }
    return test::run({test::worker_path(), "--job", seg.name(), "--id", "0"});
  };
  struct Case {
    std::function<void(JobDescriptor&)> corrupt;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {[](JobDescriptor& j) { j.magic ^= 1; }, "bad magic"},
      {[](JobDescriptor& j) { j.version = 99; }, "version 99"},
      {[](JobDescriptor& j) { j.general.phase = static_cast<Phase>(7); }, "bad phase"},
      {[](JobDescriptor& j) { j.general.batch = 3; }, "shapes do not match"},
      {[](JobDescriptor& j) { j.slots[0].row_end = 5; }, "rows [0, 5) outside [0, 4)"},
      {[](JobDescriptor& j) { j.b.ld = 0; }, "operand B: leading dimension 0"},
      {[](JobDescriptor& j) { j.a.offset = UINT64_MAX; }, "operand A"},
      {[](JobDescriptor& j) { std::memset(j.c.name, 'x', sizeof j.c.name); }, "NUL-terminated"},
      {[](JobDescriptor& j) { j.workers = 100000; }, "bad worker count"},
  };
  for (const Case& c : cases) {
    const test::RunResult r = run_worker_on(c.corrupt);
    CAPTURE(c.expect);
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "invalid descriptor: "));
    CHECK(contains(r.err, c.expect));
  }
  const test::RunResult small = run_worker_on({}, 100);
  CHECK(small.status == 2);
  CHECK(contains(small.err, "smaller than"));
  // A valid descriptor whose operands do not exist: an error naming the segment.
  const test::RunResult missing = run_worker_on([](JobDescriptor&) {});
  CHECK(missing.status != 0);
  CHECK(contains(missing.err, "shmgemm-0-0-x-none"));
  // A descriptor from a coordinator that is not this worker's parent (a dead one, say).
  const pid_t gone = test::run({"/bin/true"}).pid;
  const test::RunResult orphan =
      run_worker_on([gone](JobDescriptor& j) { j.coordinator_pid = gone; });
  CHECK(orphan.status == 3);
  CHECK(contains(orphan.err, fmt::format("coordinator {} is gone", gone)));
}

TEST_CASE("shmgemm gc removes the segments of dead coordinators, only those") {
  // A pid that surely ran and is gone: a child we waited for.
  const test::RunResult done = test::run({"/bin/true"});
  const pid_t dead = done.pid;
  const std::string orphan = segment_name_prefix(dead) + "0-a-00000000deadbeef";
  const std::string live = segment_name_prefix(::getpid()) + "0-a-00000000feedface";
  // Made by a coordinator with the same (dead) pid in another PID namespace: not ours to judge.
  const std::string foreign =
      fmt::format("shmgemm-{}-p{}-0-a-00000000f0f0f0f0", dead, pid_namespace() + 1);
  for (const std::string& name : {orphan, live, foreign}) {
    const int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    ::close(fd);
  }
  const test::RunResult dry = test::run({test::cli_path(), "gc", "--dry-run"});
  CHECK(dry.status == 0);
  CHECK(contains(dry.out, "would remove /dev/shm/" + orphan));
  CHECK(std::filesystem::exists("/dev/shm/" + orphan));

  const test::RunResult gc = test::run({test::cli_path(), "gc"});
  CAPTURE(gc.out);
  CHECK(gc.status == 0);
  CHECK(contains(gc.out, "removed /dev/shm/" + orphan));
  CHECK(contains(gc.out, "kept    /dev/shm/" + live));
  CHECK(contains(gc.out, "kept    /dev/shm/" + foreign));
  CHECK(contains(gc.out, "made in another PID namespace"));
  CHECK(!std::filesystem::exists("/dev/shm/" + orphan));
  CHECK(std::filesystem::exists("/dev/shm/" + live));
  CHECK(std::filesystem::exists("/dev/shm/" + foreign));
  ::shm_unlink(("/" + live).c_str());
  ::shm_unlink(("/" + foreign).c_str());

  // Temporary outputs in a folder named on the command line: a dead coordinator's goes, a
  // running one's stays, a file that only looks alike is left alone.
  TempDir dir;
  const std::string gone_tmp =
      fmt::format(".C.npy.shmgemm-{}-p{}-deadbeef.tmp", dead, pid_namespace());
  const std::string live_tmp =
      fmt::format(".C.npy.shmgemm-{}-p{}-feedface.tmp", ::getpid(), pid_namespace());
  // Open MPI's lock-test files beside a temporary output go with it.
  const std::string gone_lock = gone_tmp + ".locktest.1", live_lock = live_tmp + ".locktest.0";
  for (const std::string& name : {gone_tmp, gone_lock, live_tmp, live_lock,
                                  std::string(".C.npy.other.tmp"), gone_tmp + ".locktest.x"})
    test::write_file(dir / name, "partial");
  const test::RunResult files = test::run({test::cli_path(), "gc", dir.path().string()});
  CAPTURE(files.out);
  CHECK(files.status == 0);
  CHECK(contains(files.out, "removed " + (dir / gone_tmp).string()));
  CHECK(contains(files.out, "removed " + (dir / gone_lock).string()));
  std::vector<std::string> kept = {".C.npy.other.tmp", gone_tmp + ".locktest.x", live_tmp,
                                   live_lock};
  std::sort(kept.begin(), kept.end());
  CHECK(names_in(dir.path()) == kept);
}

TEST_CASE("no room: a tiny /dev/shm and a full output disk fail before computing") {
  if (::geteuid() != 0) {
    SKIP_CASE("needs root to mount a small tmpfs in a private mount namespace");
  }
  if (test::run({"/usr/bin/unshare", "-m", "/bin/true"}).status != 0) {
    SKIP_CASE("unshare -m is not permitted here");
  }
  Operands ops;
  TempDir small;
  const std::string cli = test::cli_path(), dir = ops.tmp.path().string();
  // Inside a private mount namespace: /dev/shm of 512 KiB, and a 64 KiB folder for the output.
  // A, B and C take 480 + 160 + 240 KB.
  const std::string script = fmt::format(
      "mount -t tmpfs -o size=512k tmpfs /dev/shm && mount -t tmpfs -o size=64k tmpfs {2} && "
      "{1} multiply {0}/A.npy {0}/B.npy -o {0}/C.npy --backing shm --launch spawn -w 2; echo "
      "rc=$?; "
      "{1} multiply {0}/A.npy {0}/B.npy -o {2}/C.npy; echo rc=$?; "
      "echo shm: $(ls /dev/shm); echo small: $(ls -A {2})",
      dir, cli, small.path().string());
  const test::RunResult r = test::run({"/usr/bin/unshare", "-m", "/bin/sh", "-c", script});
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(std::regex_search(
      r.err,
      std::regex(
          R"(shmgemm: not enough room in /dev/shm for A, B, C and the job descriptor: \d+ bytes needed, \d+ free)")));
  CHECK(std::regex_search(
      r.err,
      std::regex(R"(/C.npy: not enough space for the output: 240128 bytes needed, \d+ free)")));
  CHECK(r.out == "rc=1\nrc=1\nshm:\nsmall:\n");
  ops.check_untouched(r.pid);
}

TEST_CASE("a worker that cannot start is a one-line error, and no other process is signalled" *
          doctest::skip(test::kSanitized)) {
  if (!test::can_isolate()) {
    SKIP_CASE("needs root and unshare to run in a PID namespace of its own");
  }
  Operands ops;
  // Under a tight limit on open files, starting a worker fails somewhere (a pipe, a pidfd, the
  // executable). Every limit here must give either the product or one line, and the sleeping
  // bystander must live: a pid of -1 must never reach kill() or waitpid().
  std::string script = "sleep 300 & s=$!; ";
  for (int limit = 4; limit <= 16; ++limit)
    script += fmt::format(
        "(exec 2>{2}/err{0}; ulimit -n {0}; exec {1} multiply {2}/A.npy "
        "{2}/B.npy -o {2}/C{0}.npy --launch spawn --workers 2); echo {0}:$?; ",
        limit, test::cli_path(), ops.tmp.path().string());
  script += "kill -0 $s && echo bystander alive; kill $s";
  const test::RunResult r = test::run_isolated(script);
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(contains(r.out, "bystander alive"));
  int failed = 0, not_started = 0;
  for (int limit = 4; limit <= 16; ++limit) {
    CAPTURE(limit);
    const std::string err = test::read_file(ops.tmp / fmt::format("err{}", limit));
    CAPTURE(err);
    const std::string lines = "\n" + r.out;
    const bool ok = contains(lines, fmt::format("\n{}:0\n", limit));
    if (ok) {
      ops.check_result(fmt::format("C{}.npy", limit));
      continue;
    }
    // Below what the dynamic loader needs, the program never starts: not shmgemm's to report.
    if (contains(lines, fmt::format("\n{}:127\n", limit)) &&
        contains(err, "error while loading shared libraries"))
      continue;
    ++failed;
    CHECK(contains(lines, fmt::format("\n{}:1\n", limit)));
    CHECK(count_lines(err) == 1);
    CHECK(err.rfind("shmgemm: ", 0) == 0);
    not_started += contains(err, "shmgemm: cannot start worker ") ? 1 : 0;
  }
  CHECK(failed > 0);       // the lowest limits cannot run it at all
  CHECK(not_started > 0);  // and some fail exactly when a worker starts
}

TEST_CASE("a running job names nothing that a gc, here or in another PID namespace, could remove") {
  if (!test::can_isolate()) {
    SKIP_CASE("needs root and unshare to run gc in a PID namespace of its own");
  }
  Operands ops;
  // With spawn and --retries a fresh worker must attach mid-run: to memory reached through the
  // coordinator's descriptors, which no gc can remove. Both workers stall on their first
  // attempt, are killed once both gcs have run, and are retried.
  test::Process p(ops.multiply("spawn", {"--retries", "1", "--backing", "shm"}),
                  fault_env("all:stall:1"));
  const std::vector<pid_t> workers = start_stalled(p, 2);
  CHECK(test::segments_of(p.pid()).empty());
  const test::RunResult here = test::run({test::cli_path(), "gc"});
  const test::RunResult elsewhere = test::run_isolated(test::cli_path() + " gc");
  CHECK(here.status == 0);
  CHECK(elsewhere.status == 0);
  for (pid_t w : workers)
    ::kill(w, SIGKILL);
  const test::RunResult r = p.wait();
  CAPTURE(r.err);
  CHECK(r.status == 0);
  ops.check_result();
  CHECK(test::segments_of(r.pid).empty());
}

TEST_CASE("the coordinator killed at any moment, loading included, leaves nothing in /dev/shm") {
  TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  const auto before = shmgemm_names();
  for (const char* launch : {"fork", "spawn"})
    for (int ms : {5, 20, 50, 100, 200, 400}) {
      CAPTURE(launch);
      CAPTURE(ms);
      test::Process p({test::cli_path(), "multiply", a, b, "-o", (tmp / "C.npy").string(),
                       "--backing", "shm", "--launch", launch, "--workers", "2"});
      ::usleep(static_cast<useconds_t>(ms * 1000));
      ::kill(p.pid(), SIGKILL);
      const test::RunResult r = p.wait();
      CHECK(test::segments_of(r.pid).empty());
    }
  CHECK(test::eventually([&] { return shmgemm_names() == before; }, 2.0));
}

TEST_CASE("spawned workers map exactly the files the coordinator checked") {
  namespace fs = std::filesystem;
  std::mt19937_64 rng(4);
  const test::Dense a1 = test::random_dense(512, 64, rng), a2 = test::random_dense(512, 64, rng),
                    b = test::random_dense(64, 32, rng);
  const test::Dense c1 = test::reference_product(a1, b), c2 = test::reference_product(a2, b);
  const double tol = test::tolerance(DType::float64, 64);
  TempDir tmp;
  test::write_file(tmp / "A1.npy", test::npy_bytes(a1, DType::float64));
  test::write_file(tmp / "A2.npy", test::npy_bytes(a2, DType::float64));
  test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::float64));
  const std::string dir = tmp.path().string(), cli = test::cli_path();

  SUBCASE("an input replaced by rename mid-run: each result is one matrix's product, never a mix") {
    // The normal safe way to update a file, while spawned workers start up.
    std::string script;
    const int runs = 30;
    for (int i = 0; i < runs; ++i)
      script += fmt::format(
          "cp {0}/A1.npy {0}/A.npy; cp {0}/A2.npy {0}/A.new; "
          "{1} multiply {0}/A.npy {0}/B.npy -o {0}/C{2}.npy --launch spawn -w 2 >/dev/null & "
          "sleep 0.00{3}; mv {0}/A.new {0}/A.npy; wait; ",
          dir, cli, i, i % 10);
    const test::RunResult r = test::run({"/bin/sh", "-c", script});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    int mixed = 0;
    for (int i = 0; i < runs; ++i) {
      const test::Dense c = test::read_npy(tmp / fmt::format("C{}.npy", i));
      mixed += test::max_rel_diff(c, c1) <= tol || test::max_rel_diff(c, c2) <= tol ? 0 : 1;
    }
    CHECK(mixed == 0);
  }

  SUBCASE("a path longer than the job descriptor's name field is never cut to another file") {
    // The folder's absolute path is 4,089 bytes: ".../x.npyZ" is 4,096, one more than a name
    // field holds, and cut short it would name x.npy, another file.
    fs::path deep = tmp.path();
    std::string mk = fmt::format("cd {} && ", dir);
    std::size_t length = dir.size();
    while (length < 4089) {
      const std::size_t part = std::min<std::size_t>(200, 4089 - length - 1);
      const std::string name(part, 'd');
      mk += fmt::format("mkdir {0} && cd {0} && ", name);
      length += part + 1;
    }
    const std::string script =
        mk + fmt::format(
                 "cp {0}/A1.npy x.npy && cp {0}/A2.npy x.npyZ && "
                 "{1} multiply x.npyZ {0}/B.npy -o C.npy --launch spawn -w 2 >/dev/null "
                 "&& cp C.npy {0}/C-deep.npy && test ${{#PWD}} -eq 4089",
                 dir, cli);
    const test::RunResult r = test::run({"/bin/bash", "-c", script});
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(test::max_rel_diff(test::read_npy(tmp / "C-deep.npy"), c2) <= tol);
  }
}

TEST_CASE(
    "every signal that ends a process by default stops a run cleanly; an ignored one stays "
    "ignored") {
  Operands ops;
  for (int sig : {SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU, SIGQUIT, SIGPIPE}) {
    CAPTURE(sig);
    test::Process p(ops.multiply(sig % 2 ? "spawn" : "fork"), fault_env("all:stall"));
    const std::vector<pid_t> workers = start_stalled(p, 2);
    ::kill(p.pid(), sig);
    const test::RunResult r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 128 + sig);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, fmt::format("interrupted by SIG{}", sigabbrev_np(sig))));
    for (pid_t w : workers)
      CHECK(test::has_exited(w));
    ops.check_untouched(r.pid);
  }
  // nohup: SIGHUP ignored before shmgemm starts stays ignored; SIGTERM still stops the run.
  std::string command;
  for (const std::string& arg : ops.multiply("spawn"))
    command += " '" + arg + "'";
  std::vector<std::string> env = fault_env("all:stall");
  test::Process p({"/bin/sh", "-c", "trap '' HUP; exec" + command}, env);
  start_stalled(p, 2);
  ::kill(p.pid(), SIGHUP);
  ::usleep(300 * 1000);
  CHECK(!test::has_exited(p.pid()));
  ::kill(p.pid(), SIGTERM);
  const test::RunResult r = p.wait();
  CHECK(r.status == 128 + SIGTERM);
  ops.check_untouched(r.pid);
}

TEST_CASE(
    "an interrupt while spawned workers attach: exit 128 + signal, never a system-call error") {
  Operands ops;
  for (int trial = 0; trial < 12; ++trial) {
    CAPTURE(trial);
    test::Process p(ops.multiply("spawn"), fault_env("all:stall"));
    REQUIRE(test::eventually([&] { return test::handles(p.pid(), SIGINT); }, 20.0));
    ::usleep(static_cast<useconds_t>(2000 + trial * 1500));
    ::kill(p.pid(), trial % 2 ? SIGINT : SIGTERM);
    const test::RunResult r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 128 + (trial % 2 ? SIGINT : SIGTERM));
    CHECK(!contains(r.err, "Interrupted system call"));
    ops.check_untouched(r.pid);
  }
}

TEST_CASE(
    "no hangs: --timeout names the late workers, a stopped worker is reported, one that exits 0 "
    "without working fails") {
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    // Workers that never finish: --timeout gives up, naming each and how far it got.
    const auto t0 = std::chrono::steady_clock::now();
    test::RunResult r =
        test::run(ops.multiply(launch, {"--timeout", "0.5"}), fault_env("all:stall"));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err,
                   "shmgemm: timed out after 0.5 s: worker 0 (rows 0-149) at 0 of 150 rows; "
                   "worker 1 (rows 150-299) at 0 of 150 rows"));
    CHECK(seconds < 3.0);
    ops.check_untouched(r.pid);

    // A worker stopped by SIGSTOP: reported once, waited for, and named when the time is up.
    test::Process p(ops.multiply(launch, {"--timeout", "1.5"}), fault_env("all:stall"));
    const std::vector<pid_t> workers = start_stalled(p, 2);
    ::kill(workers[0], SIGSTOP);
    r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 2);
    CHECK(std::regex_search(
        r.err,
        std::regex(
            R"(worker \d \(rows \d+-\d+\) is stopped by SIGSTOP; waiting for it until the timeout\n)")));
    CHECK(std::regex_search(r.err, std::regex(R"(at 0 of 150 rows, stopped by SIGSTOP)")));
    for (pid_t w : workers)
      CHECK(test::has_exited(w));
    ops.check_untouched(r.pid);
  }
  // A worker executable that exits 0 without attaching: a failure, not a success of zeros.
  const test::RunResult r = test::run(ops.multiply("spawn"), {"SHMGEMM_WORKER=/bin/true"});
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(contains(r.err, "exited with status 0 without computing its rows (it never attached"));
  ops.check_untouched(r.pid);
}

TEST_CASE("an input truncated mid-run: one line naming it, exit 1, never a crash, nothing left") {
  TempDir tmp;
  const std::string g1 = (tmp / "A.npy").string(), g2 = (tmp / "B.npy").string(),
                    t = (tmp / "T.npy").string(), c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  const auto shm_before = shmgemm_names();
  int caught = 0;
  const std::vector<std::vector<std::string>> modes = {{"--workers", "2", "--backing", "shm"},
                                                       {"--workers", "2", "--launch", "fork"},
                                                       {"--workers", "2", "--launch", "spawn"},
                                                       {"--in-process"}};
  for (const auto& mode : modes)
    for (int ms : {10, 40, 120}) {
      CAPTURE(mode[mode.size() - 1]);
      CAPTURE(ms);
      std::filesystem::copy_file(g1, t, std::filesystem::copy_options::overwrite_existing);
      std::vector<std::string> argv = {test::cli_path(), "multiply", t, g2, "-o", c};
      argv.insert(argv.end(), mode.begin(), mode.end());
      test::Process p(argv);
      ::usleep(static_cast<useconds_t>(ms * 1000));
      REQUIRE(::truncate(t.c_str(), 1000) == 0);  // what np.save over an input does first
      const test::RunResult r = p.wait();
      CAPTURE(r.err);
      CHECK((r.status == 0 || r.status == 1));  // done before the cut, or an error: not 135
      if (r.status == 1) {
        // Cut while being read, or (the earliest cuts) before it was opened.
        const bool mid_run = contains(r.err, "T.npy: changed or truncated while being read");
        caught += mid_run ? 1 : 0;
        CHECK(count_lines(r.err) == 1);
        CHECK((mid_run || contains(r.err, "T.npy: truncated data")));
        CHECK(!std::filesystem::exists(c));
      }
      CHECK(test::segments_of(r.pid).empty());
      std::filesystem::remove(c);
    }
  CHECK(caught > 0);  // the SIGBUS path was taken
  CHECK(test::eventually([&] { return shmgemm_names() == shm_before; }, 2.0));
}

TEST_CASE("an interrupt stops an in-process product between steps, and says nothing of workers") {
  TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string(),
                    c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "16384x2048", "2048x2048");
  const std::vector<std::string> argv = {test::cli_path(), "multiply", a, b, "-o", c,
                                         "--in-process"};
  auto timed = [&](bool interrupt) {
    const auto t0 = std::chrono::steady_clock::now();
    test::Process p(argv);
    if (interrupt) {
      REQUIRE(test::eventually([&] { return test::handles(p.pid(), SIGINT); }, 20.0));
      ::usleep(200 * 1000);
      ::kill(p.pid(), SIGINT);
    }
    const test::RunResult r = p.wait();
    return std::pair{r,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  };
  const auto [whole, whole_s] = timed(false);
  REQUIRE(whole.status == 0);
  std::filesystem::remove(c);
  const auto [stopped, stopped_s] = timed(true);
  CAPTURE(stopped.err);
  MESSAGE(fmt::format("whole product {:.2f} s; interrupted at 0.2 s, ended at {:.2f} s", whole_s,
                      stopped_s));
  CHECK(stopped.status == 128 + SIGINT);
  CHECK(contains(stopped.err, "interrupted by SIGINT: stopped, output left unchanged"));
  CHECK(!contains(stopped.err, "workers"));
  CHECK(!std::filesystem::exists(c));
  // Between steps of rows, not at the end: well before the whole product would have ended.
  CHECK(stopped_s < 0.2 + 0.6 * (whole_s - 0.2));
}

TEST_CASE("demo: SIGTERM stops it and removes its folder; after a SIGKILL, gc removes it") {
  TempDir tmp;
  const std::vector<std::string> env = {"TMPDIR=" + tmp.path().string()};
  const std::vector<std::string> argv = {test::cli_path(), "demo",     "--size",
                                         "1500",           "--rounds", "20"};
  {
    test::Process p(argv, env);
    REQUIRE(test::eventually([&] { return !names_in(tmp.path()).empty(); }, 10.0));
    ::usleep(300 * 1000);
    const auto t0 = std::chrono::steady_clock::now();
    ::kill(p.pid(), SIGTERM);
    const test::RunResult r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 128 + SIGTERM);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
    CHECK(names_in(tmp.path()).empty());
  }
  {
    test::Process p(argv, env);
    REQUIRE(test::eventually([&] { return !names_in(tmp.path()).empty(); }, 10.0));
    ::usleep(300 * 1000);
    ::kill(p.pid(), SIGKILL);
    p.wait();
    ::usleep(200 * 1000);  // its last child (a multiply) dies with it
    REQUIRE(names_in(tmp.path()).size() == 1);
    const test::RunResult gc = test::run({test::cli_path(), "gc"}, env);
    CAPTURE(gc.out);
    CHECK(gc.status == 0);
    CHECK(contains(gc.out, "removed folder "));
    CHECK(names_in(tmp.path()).empty());
  }
}

TEST_CASE(
    "under a tight address-space limit (ulimit -v): fewer OpenBLAS threads or one line, never a "
    "hang" *
    doctest::skip(test::kSanitized)) {
  TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string(),
                    c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  // An OpenBLAS thread that cannot map its buffer retries for ever and ignores signals: each
  // run here must end by itself.
  for (const char* mode : {"--in-process", "--workers=2"})
    for (int mib : {400, 480, 560, 640}) {
      CAPTURE(mode);
      CAPTURE(mib);
      test::Process p({"/bin/sh", "-c",
                       fmt::format("ulimit -v {} && exec {} multiply {} {} -o {} {}", mib * 1024,
                                   test::cli_path(), a, b, c, mode)});
      const bool ended = test::eventually([&] { return test::has_exited(p.pid()); }, 30.0);
      if (!ended) ::kill(p.pid(), SIGKILL);
      const test::RunResult r = p.wait();
      CAPTURE(r.err);
      CHECK(ended);
      CHECK((r.status == 0 || r.status == 1));
      if (r.status == 1) CHECK(count_lines(r.err) == 1);
      std::filesystem::remove(c);
    }
}

TEST_CASE("the programs a user runs have no fault hook: SHMGEMM_TEST_FAULT changes nothing") {
  // The hook lives in the test library only: no production binary names the variable...
  for (const std::string& file :
       {test::cli_path(), test::worker_path(),
        (std::filesystem::path(test::cli_path()).parent_path().parent_path() / "lib" /
         "libshmgemm.so")
            .string()}) {
    CAPTURE(file);
    const std::string bytes = test::read_file(file);
    CHECK(bytes.find("SHMGEMM_TEST_FAULT") == std::string::npos);
  }
  // ...and setting it, without the test library, leaves a run as it is.
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    const test::RunResult r = test::run(ops.multiply(launch), {"SHMGEMM_TEST_FAULT=all:kill"});
    CAPTURE(r.err);
    CHECK(r.status == 0);
    ops.check_result();
  }
}

TEST_CASE("--timeout after the work is done: the finished product is kept, never thrown away") {
  // Workers that compute their rows and then never exit: the deadline passes with every row
  // done. The result is complete, so it is written, and the lingering workers are killed.
  Operands ops;
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    const auto t0 = std::chrono::steady_clock::now();
    const test::RunResult r =
        test::run(ops.multiply(launch, {"--timeout", "0.5"}), fault_env("all:linger"));
    CAPTURE(r.err);
    CHECK(r.status == 0);
    CHECK(!contains(r.err, "timed out"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    ops.check_result();
    CHECK(test::segments_of(r.pid).empty());
    CHECK(test::children_of(r.pid).empty());
  }
}
