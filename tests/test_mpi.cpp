// shmgemm-mpi under mpirun on this machine: 2 and 4 ranks (oversubscribed), both node groupings,
// against the naive reference; bad input said once; a failing and a killed rank leave no output.
// Skipped (exit 77) where mpirun is missing.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <random>
#include <sstream>

#include "common/npy.hpp"
#include "test_support.hpp"

using namespace shmgemm;
namespace fs = std::filesystem;

namespace {

std::string mpirun_path() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (::access((fs::path(dir) / "mpirun").c_str(), X_OK) == 0) return (fs::path(dir) / "mpirun");
  return {};
}

// `mpirun -n P shmgemm-mpi multiply args...`, quiet, as root where needed, with `env` passed on.
test::RunResult mpi_run(int ranks, const std::vector<std::string>& args,
                        const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {mpirun_path(), "-q", "--oversubscribe"};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  for (const std::string& e : env)
    argv.insert(argv.end(), {"-x", e.substr(0, e.find('='))});
  argv.insert(argv.end(), {"-n", std::to_string(ranks), SHMGEMM_MPI_EXE, "multiply"});
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv, env);
}

// The lines of `text` that start with `prefix`.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  return out;
}

bool contains_line(const std::string& text, const std::string& start) {
  return !lines_starting(text, start).empty();
}

struct Case {
  std::uint64_t m, k, n;
  DType dtype;
  bool a_fortran, b_fortran;
};

}  // namespace

TEST_CASE("odd shapes against the naive reference: 2 and 4 ranks, both node groupings") {
  const Case cases[] = {
      {97, 89, 101, DType::float64, false, false}, {3, 89, 101, DType::float32, true, false},
      {7, 1, 9, DType::float64, false, true},      {1, 13, 7, DType::float64, false, false},
      {64, 33, 1, DType::float32, true, true},     {5, 0, 3, DType::float64, false, false},
  };
  std::mt19937_64 rng(8);
  // Under the sanitizers (each rank starts slower), 4 ranks only.
  for (int ranks : test::kSanitized ? std::vector<int>{4} : std::vector<int>{2, 4})
    for (const Case& c : cases)
      for (const std::vector<std::string>& mode :
           std::vector<std::vector<std::string>>{{},
                                                 {"--mpi-io"},
                                                 {"--one-rank-per-node", "--a-from", "read"},
                                                 {"--one-rank-per-node", "--b-from", "path"}}) {
        // Ranks as nodes of their own: on 4 ranks (the nodes test runs 3 real ones).
        if (ranks == 2 && mode.size() == 3) continue;
        CAPTURE(ranks);
        CAPTURE(c.m);
        CAPTURE(c.k);
        CAPTURE(c.n);
        CAPTURE(mode.size());
        test::TempDir tmp;
        const test::Dense a = test::random_dense(c.m, c.k, rng);
        const test::Dense b = test::random_dense(c.k, c.n, rng);
        test::write_file(tmp / "A.npy", test::npy_bytes(a, c.dtype, c.a_fortran));
        test::write_file(tmp / "B.npy", test::npy_bytes(b, c.dtype, c.b_fortran));
        std::vector<std::string> args = {(tmp / "A.npy").string(), (tmp / "B.npy").string(), "-o",
                                         (tmp / "C.npy").string(), "--json"};
        args.insert(args.end(), mode.begin(), mode.end());
        // The row decomposition across "nodes" (a grid of panels may move fewer bytes there).
        if (mode.size() == 3) args.insert(args.end(), {"--grid", fmt::format("{}x1", ranks)});
        const test::RunResult r = mpi_run(ranks, args);
        REQUIRE_MESSAGE(r.status == 0, r.err);
        // Rank 0 alone prints the report.
        CHECK(lines_starting(r.out, "{").size() == 1);
        const auto j = nlohmann::json::parse(r.out);
        const test::Dense got = test::read_npy(tmp / "C.npy");
        CHECK(test::max_rel_diff(got, test::reference_product(a, b)) <=
              test::tolerance(c.dtype, c.k));
        const bool apart = mode.size() == 3;
        // On one node B is mapped and C written in place, unless --mpi-io asks for the window
        // and collective MPI-IO, which is the only way across nodes.
        const bool mapped = mode.empty();
        CHECK(j["mpi"]["c_to"] == (mapped ? "map" : "mpi-io"));
        if (mapped) CHECK(j["mpi"]["b_from"] == "map");
        if (mode.size() == 1) CHECK(j["mpi"]["b_from"] == "broadcast");
        CHECK(j["mpi"]["ranks"] == ranks);
        CHECK(j["mpi"]["nodes"] == (apart ? ranks : 1));
        const std::uint64_t b_bytes = j["mpi"]["b_bytes"];
        CHECK(b_bytes == c.k * c.n * item_size(c.dtype));
        // B travels between nodes only by broadcast; with --b-from path every node reads it.
        const bool by_path = mode.size() == 3 && mode[1] == "--b-from";
        // A's rows are mapped unless asked otherwise or strided (Fortran order).
        const bool read_a = c.a_fortran || (mode.size() == 3 && mode[1] == "--a-from");
        CHECK(j["mpi"]["a_from"] == (read_a ? "read" : "map"));
        CHECK(j["mpi"]["b_bytes_between_nodes"] ==
              (by_path ? 0 : b_bytes * std::uint64_t(apart ? ranks - 1 : 0)));
        CHECK(j["mpi"]["b_bytes_read"] == b_bytes * std::uint64_t(by_path ? ranks : 1));
        // The ranks' rows are contiguous and cover C.
        std::uint64_t at = 0;
        for (const auto& part : j["mpi"]["per_rank"]) {
          CHECK(part["rows"][0] == at);
          at = part["rows"][1];
        }
        CHECK(at == c.m);
        // Nothing but the operands and the result is left.
        CHECK(test::names_in(tmp.path()) == std::vector<std::string>{"A.npy", "B.npy", "C.npy"});
      }
}

TEST_CASE("complex and 1-D operands against numpy") {
  if (::access("/usr/bin/python3", X_OK) != 0) return;
  test::TempDir tmp;
  const std::string script = fmt::format(
      R"(
import numpy as np, subprocess, sys
rng = np.random.default_rng(3)
cases = [((33, 17), (17, 5), np.complex128), ((9, 4), (4, 6), np.complex64),
         ((17,), (17, 4), np.float64), ((4, 17), (17,), np.float32)]
for sa, sb, dt in cases:
    a = rng.random(sa).astype(dt); b = rng.random(sb).astype(dt)
    if np.iscomplexobj(a): a = a + 1j * rng.random(sa).astype(dt); b = b - 2j * rng.random(sb).astype(dt)
    np.save('{0}/A.npy', a); np.save('{0}/B.npy', b)
    r = subprocess.run(sys.argv[1:] + ['{0}/A.npy', '{0}/B.npy', '-o', '{0}/C.npy'])
    assert r.returncode == 0, (sa, sb, dt)
    c = np.load('{0}/C.npy'); ref = a @ b
    assert c.shape == ref.shape and c.dtype == ref.dtype, (c.shape, c.dtype)
    assert np.allclose(c, ref, rtol=1e-5, atol=1e-5), (sa, sb, dt)
print('ok')
)",
      tmp.path().string());
  test::write_file(tmp / "check.py", script);
  std::vector<std::string> argv = {"/usr/bin/python3", (tmp / "check.py").string(), mpirun_path(),
                                   "-q", "--oversubscribe"};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  argv.insert(argv.end(), {"-n", "3", SHMGEMM_MPI_EXE, "multiply"});
  const test::RunResult r = test::run(argv);
  if (test::contains(r.err, "No module named 'numpy'")) return;
  CHECK_MESSAGE(r.status == 0, r.err);
  CHECK(test::contains(r.out, "ok"));
}

TEST_CASE("bad input: the single-machine program's one line, printed once, output untouched") {
  std::mt19937_64 rng(9);
  test::TempDir tmp;
  test::write_file(tmp / "A.npy", test::npy_bytes(test::random_dense(6, 4, rng), DType::float64));
  test::write_file(tmp / "B.npy", test::npy_bytes(test::random_dense(5, 3, rng), DType::float64));
  // A stack of two (6, 5) matrices.
  const std::vector<std::uint64_t> stack = {2, 6, 5};
  test::write_file(tmp / "S.npy", format_npy_header(DType::float64, stack) +
                                      std::string(2 * 6 * 5 * sizeof(double), '\0'));
  test::write_file(tmp / "bad.npy", "not a numpy file at all");
  test::write_file(tmp / "C.npy", "the previous result");
  const std::string A = (tmp / "A.npy").string(), B = (tmp / "B.npy").string(),
                    S = (tmp / "S.npy").string(), bad = (tmp / "bad.npy").string(),
                    C = (tmp / "C.npy").string(), missing = (tmp / "missing.npy").string();
  const std::vector<std::string> before = test::names_in(tmp.path());
  struct Bad {
    std::vector<std::string> args;
    bool same_as_shmgemm;  // `shmgemm multiply` says the same
  };
  const Bad bads[] = {
      {{missing, B, "-o", C}, true},
      {{bad, B, "-o", C}, true},
      {{A, B, "-o", C}, true},  // (6,4) @ (5,3)
      {{A, B, "-o", (tmp / "no/such/dir/C.npy").string()}, true},
      // A stack runs by rows: a grid of panels is for two matrices.
      {{S, B, "-o", C, "--grid", "2x2"}, false},
  };
  for (const Bad& bad_case : bads) {
    CAPTURE(bad_case.args[0]);
    CAPTURE(bad_case.args[1]);
    const test::RunResult r = mpi_run(4, bad_case.args);
    CHECK(r.status != 0);
    const auto said = lines_starting(r.err, "shmgemm-mpi: ");
    REQUIRE_MESSAGE(said.size() == 1, r.err);
    CHECK_FALSE(test::contains(said[0], "rank "));
    if (bad_case.same_as_shmgemm) {
      std::vector<std::string> argv = {test::cli_path(), "multiply"};
      argv.insert(argv.end(), bad_case.args.begin(), bad_case.args.end());
      const test::RunResult one = test::run(argv);
      CHECK(one.status != 0);
      CHECK(said[0].substr(std::string("shmgemm-mpi: ").size()) ==
            one.err.substr(std::string("shmgemm: ").size(),
                           one.err.find('\n') - std::string("shmgemm: ").size()));
    } else {
      CHECK(test::contains(said[0], "--grid 2x2: a grid of more than one column takes two 2-D"));
    }
    CHECK(test::read_file(tmp / "C.npy") == "the previous result");
    CHECK(test::names_in(tmp.path()) == before);
  }
  // Options too: one line from rank 0.
  const test::RunResult r = mpi_run(2, {A, B, "-o", C, "--threads", "0"});
  CHECK(r.status != 0);
  CHECK(lines_starting(r.err, "shmgemm-mpi: ").size() == 1);
}

TEST_CASE("a failing rank: the job stops with that rank's message and leaves no output") {
  std::mt19937_64 rng(10);
  for (const char* fault : {"2:throw", "1:kill", "0:kill"}) {
    CAPTURE(fault);
    test::TempDir tmp;
    test::write_file(tmp / "A.npy",
                     test::npy_bytes(test::random_dense(300, 200, rng), DType::float64));
    test::write_file(tmp / "B.npy",
                     test::npy_bytes(test::random_dense(200, 100, rng), DType::float64));
    test::write_file(tmp / "C.npy", "the previous result");
    const std::vector<std::string> before = test::names_in(tmp.path());
    const test::RunResult r = mpi_run(
        4, {(tmp / "A.npy").string(), (tmp / "B.npy").string(), "-o", (tmp / "C.npy").string()},
        {fmt::format("SHMGEMM_TEST_FAULT={}", fault), test::fault_preload(),
         "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0"});
    CHECK(r.status != 0);
    if (std::string(fault) == "2:throw") {
      const auto said = lines_starting(r.err, "shmgemm-mpi: ");
      REQUIRE_MESSAGE(said.size() == 1, r.err);
      CHECK(said[0] == "shmgemm-mpi: rank 2: injected fault (test hook)");
    }
    // The temporary output is gone (removed by the rank that failed, or by the surviving
    // ranks' signal handlers when mpirun ends the job), and C.npy is as it was.
    CHECK(test::eventually([&] { return test::names_in(tmp.path()) == before; }, 5));
    CHECK(test::read_file(tmp / "C.npy") == "the previous result");
  }
}

TEST_CASE("--timeout ends the job in one line naming the step, the output as it was") {
  std::mt19937_64 rng(11);
  test::TempDir tmp;
  // 27 GFLOP a rank: about a second on one thread, against a tenth of a second.
  test::write_file(tmp / "A.npy",
                   test::npy_bytes(test::random_dense(3000, 3000, rng), DType::float64));
  test::write_file(tmp / "B.npy",
                   test::npy_bytes(test::random_dense(3000, 3000, rng), DType::float64));
  test::write_file(tmp / "C.npy", "the previous result");
  const std::vector<std::string> before = test::names_in(tmp.path());
  const test::RunResult r =
      mpi_run(2,
              {(tmp / "A.npy").string(), (tmp / "B.npy").string(), "-o", (tmp / "C.npy").string(),
               "--threads", "1", "--timeout", "0.1"},
              {"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0"});
  CHECK(r.status != 0);
  const auto said = lines_starting(r.err, "shmgemm-mpi: ");
  REQUIRE_MESSAGE(said.size() == 1, r.err);
  CHECK(test::contains(said[0], "shmgemm-mpi: --timeout 0.1 s passed while "));
  CHECK(test::eventually([&] { return test::names_in(tmp.path()) == before; }, 5));
  CHECK(test::read_file(tmp / "C.npy") == "the previous result");
}

TEST_CASE("--plan-only prints the model at scale, without mpirun") {
  const test::RunResult r =
      test::run({SHMGEMM_MPI_EXE, "--plan-only", "--shape", "100000x100000x100000",
                 "--memory-per-rank", "16G", "--ranks-per-node", "32", "--nodes", "2,1024"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  // Two nodes: rows only fits (4.66 GiB a rank: B's share of a node and 1/64 of A and C) and
  // moves least; 1024 nodes: B 1024 times (74.6 TiB) against a 256 x 128 grid's 27.9 TiB.
  CHECK(test::contains(r.out, "| 2 | 64 | 4.66 GiB / 224 GiB | 64 x 1 | 4.66 GiB / 224 GiB |"));
  CHECK(test::contains(r.out,
                       "| 1024 | 32768 | 2.33 GiB / 74.6 TiB | 256 x 128 | 896 MiB / "
                       "27.9 TiB |"));
  const test::RunResult bad =
      test::run({SHMGEMM_MPI_EXE, "--plan-only", "--shape", "100000x100000"});
  CHECK(bad.status == 2);
  CHECK(bad.err ==
        "shmgemm-mpi: --shape 100000x100000: expected MxKxN, such as "
        "100000x100000x100000\n");
}

TEST_CASE("shmgemm multiply --launch mpi starts mpirun and gives the same answer") {
  std::mt19937_64 rng(11);
  test::TempDir tmp;
  const test::Dense a = test::random_dense(41, 23, rng), b = test::random_dense(23, 17, rng);
  test::write_file(tmp / "A.npy", test::npy_bytes(a, DType::float64));
  test::write_file(tmp / "B.npy", test::npy_bytes(b, DType::float64));
  const test::RunResult r =
      test::run({test::cli_path(), "multiply", (tmp / "A.npy").string(), (tmp / "B.npy").string(),
                 "-o", (tmp / "C.npy").string(), "--launch", "mpi", "--workers", "3", "--json"});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["launch"] == "mpi");
  CHECK(j["workers"] == 3);
  CHECK(test::max_rel_diff(test::read_npy(tmp / "C.npy"), test::reference_product(a, b)) <=
        test::tolerance(DType::float64, 23));
  // What does not apply is refused before anything starts.
  const test::RunResult refused =
      test::run({test::cli_path(), "multiply", (tmp / "A.npy").string(), (tmp / "B.npy").string(),
                 "-o", (tmp / "D.npy").string(), "--launch", "mpi", "--backing", "shm"});
  CHECK(refused.status != 0);
  CHECK(test::contains(refused.err, "--backing does not apply"));
  CHECK_FALSE(fs::exists(tmp / "D.npy"));
  // On one machine (no hostfile) mpirun is told to use shared memory only, without probing for
  // a network; with a hostfile, Open MPI chooses. A wrapper records the arguments it was given.
  const fs::path wrapper = tmp / "mpirun";
  test::write_file(wrapper, fmt::format("#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
                                        (tmp / "args").string(), mpirun_path()));
  fs::permissions(wrapper, fs::perms::owner_all);
  test::write_file(tmp / "hosts", "localhost slots=2\n");
  for (const bool hostfile : {false, true}) {
    std::vector<std::string> argv = {test::cli_path(),
                                     "multiply",
                                     (tmp / "A.npy").string(),
                                     (tmp / "B.npy").string(),
                                     "-o",
                                     (tmp / "E.npy").string(),
                                     "--launch",
                                     "mpi",
                                     "--workers",
                                     "2"};
    if (hostfile) argv.insert(argv.end(), {"--hostfile", (tmp / "hosts").string()});
    fs::remove(tmp / "args");
    const test::RunResult w = test::run(argv, {"SHMGEMM_MPIRUN=" + wrapper.string()});
    REQUIRE_MESSAGE(w.status == 0, w.err);
    const std::string args = test::read_file(tmp / "args");
    CAPTURE(args);
    CHECK(test::contains(args, "--mca btl self,vader --mca pml ob1") == !hostfile);
    CHECK(test::max_rel_diff(test::read_npy(tmp / "E.npy"), test::reference_product(a, b)) <=
          test::tolerance(DType::float64, 23));
  }
}

int main(int argc, char** argv) {
  if (mpirun_path().empty())
    return test::skip_program(
        "test_mpi", "mpirun not found on PATH (tools/install-deps.sh installs openmpi-bin)");
  // Open MPI refuses root unless told; these tests run it as whoever runs them.
  if (::geteuid() == 0) {
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  // Under AddressSanitizer (make sanitize): Open MPI 4.1 leaks some 3,300 allocations in its
  // dlopened components at MPI_Finalize, outside shmgemm's code. The processes these tests start
  // keep every address and undefined-behaviour check, but not leak detection.
  if (const char* asan = std::getenv("ASAN_OPTIONS"))
    ::setenv("ASAN_OPTIONS", (std::string(asan) + ":detect_leaks=0").c_str(), 1);
  doctest::Context context(argc, argv);
  return test::finish(context.run());
}

TEST_CASE("ranks that see other files at the same paths are refused, before any work") {
  std::mt19937_64 rng(12);
  // Each rank runs in its own folder, as on nodes with node-local paths: dir0 and dir1 hold
  // an a.npy each, of another shape, or of the same shape and other values.
  for (bool same_shape : {false, true}) {
    CAPTURE(same_shape);
    test::TempDir tmp;
    fs::create_directory(tmp / "dir0");
    fs::create_directory(tmp / "dir1");
    const test::Dense b = test::random_dense(200, 100, rng);
    test::write_file(tmp / "dir0" / "a.npy",
                     test::npy_bytes(test::random_dense(300, 200, rng), DType::float64));
    test::write_file(
        tmp / "dir1" / "a.npy",
        test::npy_bytes(test::random_dense(same_shape ? 300 : 100, 200, rng), DType::float64));
    for (const char* dir : {"dir0", "dir1"})
      test::write_file(tmp / dir / "b.npy", test::npy_bytes(b, DType::float64));
    test::write_file(tmp / "C.npy", "the previous result");
    std::vector<std::string> argv = {mpirun_path(), "-q", "--oversubscribe"};
    if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
    argv.insert(argv.end(),
                {"-n", "2", "/bin/sh", "-c",
                 fmt::format("cd {0}/dir$OMPI_COMM_WORLD_RANK && exec {1} multiply a.npy b.npy -o "
                             "{0}/C.npy",
                             tmp.path().string(), SHMGEMM_MPI_EXE)});
    const test::RunResult r = test::run(argv);
    CAPTURE(r.err);
    CHECK(r.status != 0);
    const auto said = lines_starting(r.err, "shmgemm-mpi: ");
    REQUIRE(said.size() == 1);
    CHECK(said[0].find("rank 1 on ") != std::string::npos);
    CHECK(said[0].find("sees other operand files than rank 0 at the same paths") !=
          std::string::npos);
    if (same_shape)
      CHECK(said[0].find("(the contents differ)") != std::string::npos);
    else
      CHECK(said[0].find("(100,200) float64") != std::string::npos);
    CHECK(test::read_file(tmp / "C.npy") == "the previous result");
    CHECK(test::names_in(tmp.path()) == std::vector<std::string>{"C.npy", "dir0", "dir1"});
  }
}

// Open MPI's own shared memory (vader segments, ompio's semaphores) that a job killed with
// SIGKILL could not remove: not shmgemm's, but this test's doing, so it removes what appeared
// while it ran and no process maps any more. (ctest never runs two MPI tests at once.)
struct OpenMpiLeftovers {
  std::vector<std::string> before = test::names_in("/dev/shm");
  ~OpenMpiLeftovers() {
    std::string maps;
    for (const auto& p : fs::directory_iterator("/proc"))
      if (std::isdigit(static_cast<unsigned char>(p.path().filename().string()[0])))
        maps += test::read_file_if_any(p.path() / "maps");
    for (const std::string& name : test::names_in("/dev/shm"))
      if ((name.rfind("vader_segment.", 0) == 0 || name.rfind("sem.OMPIO_", 0) == 0) &&
          std::find(before.begin(), before.end(), name) == before.end() &&
          maps.find("/dev/shm/" + name) == std::string::npos)
        fs::remove("/dev/shm/" + name);
  }
};

TEST_CASE(
    "--launch mpi: an interrupt, a killed mpirun or killed ranks leave the output as it was") {
  const OpenMpiLeftovers open_mpi;
  test::TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string(),
                    c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  const std::vector<std::string> argv = {test::cli_path(), "multiply", a,           b,  "-o", c,
                                         "--launch",       "mpi",      "--workers", "2"};
  auto descendants = [](pid_t root) {
    std::vector<pid_t> all, frontier = {root};
    while (!frontier.empty()) {
      const pid_t p = frontier.back();
      frontier.pop_back();
      for (pid_t k : test::children_of(p)) {
        all.push_back(k);
        frontier.push_back(k);
      }
    }
    return all;
  };
  auto untouched = [&] {
    CAPTURE(fmt::format("{}", fmt::join(test::names_in(tmp.path()), " ")));
    CHECK(test::read_file(c) == "the previous result");
    CHECK(test::names_in(tmp.path()) == std::vector<std::string>{"A.npy", "B.npy", "C.npy"});
  };
  // SIGTERM to shmgemm: mpirun and the ranks stopped, exit 143, one line.
  for (int ms : {100, 300}) {
    CAPTURE(ms);
    test::write_file(c, "the previous result");
    test::Process p(argv);
    REQUIRE(test::eventually([&] { return test::handles(p.pid(), SIGTERM); }, 20.0));
    ::usleep(static_cast<useconds_t>(ms * 1000));
    const std::vector<pid_t> tree = descendants(p.pid());
    ::kill(p.pid(), SIGTERM);
    const test::RunResult r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 128 + SIGTERM);
    CHECK(r.err == "shmgemm: interrupted by SIGTERM: stopped, output left unchanged\n");
    CHECK(test::eventually([&] { return std::all_of(tree.begin(), tree.end(), test::has_exited); },
                           3.0));
    CHECK(test::eventually([&] { return test::names_in(tmp.path()).size() == 3; }, 3.0));
    untouched();
  }
  // mpirun killed outright: its ranks get SIGTERM (their parent-death signal) and clean up.
  {
    test::write_file(c, "the previous result");
    test::Process p(argv);
    REQUIRE(test::eventually([&] { return descendants(p.pid()).size() >= 3; }, 10.0));
    ::usleep(200 * 1000);
    const std::vector<pid_t> tree = descendants(p.pid());
    ::kill(test::children_of(p.pid()).at(0), SIGKILL);
    const test::RunResult r = p.wait();
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(r.err == "shmgemm: --launch mpi: mpirun exited with status 137\n");
    CHECK(test::eventually([&] { return std::all_of(tree.begin(), tree.end(), test::has_exited); },
                           3.0));
    CHECK(test::eventually([&] { return test::names_in(tmp.path()).size() == 3; }, 3.0));
    untouched();
  }
  // Every rank killed: nothing could remove the hidden temporary output; gc FOLDER does.
  {
    test::write_file(c, "the previous result");
    test::Process p(argv);
    REQUIRE(test::eventually([&] { return test::names_in(tmp.path()).size() == 4; }, 10.0));
    const pid_t mpirun = test::children_of(p.pid()).at(0);
    for (pid_t rank : test::children_of(mpirun))
      ::kill(rank, SIGKILL);
    p.wait();
    // The temporary output, and Open MPI's lock-test file beside it if a rank had made one.
    if (test::names_in(tmp.path()).size() > 3) {
      const test::RunResult gc = test::run({test::cli_path(), "gc", tmp.path().string()});
      CAPTURE(gc.out);
      CHECK(contains_line(gc.out, "removed " + tmp.path().string() + "/."));
    }
    untouched();
  }
  // A hostfile that is not there: mpirun's own complaint, in one line.
  const test::RunResult r = test::run({test::cli_path(), "multiply", a, b, "-o", c, "--launch",
                                       "mpi", "--hostfile", (tmp / "nohosts").string()});
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find("mpirun exited with status 1: ") != std::string::npos);
  CHECK(r.err.find("hostfile") != std::string::npos);
  untouched();
}
