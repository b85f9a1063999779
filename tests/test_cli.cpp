// The shmgemm executable, end to end: success, --json, --help, gen, and every bad input.
#include <doctest/doctest.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/test_support.hpp"

using namespace shmgemm;
using test::contains;
using test::count_lines;
using test::names_in;
using test::TempDir;

namespace {

// `shmgemm ARGS` is a usage error: exit 2, one line on stderr containing `expect`, nothing on
// stdout, nothing added to or removed from `folder`.
void expect_usage_error(const std::vector<std::string>& args, const std::string& expect,
                        const std::filesystem::path& folder) {
  std::vector<std::string> argv = {test::cli_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto before = names_in(folder);
  const test::RunResult r = test::run(argv);
  CAPTURE(args);
  CAPTURE(r.err);
  CHECK(r.status == 2);
  CHECK(count_lines(r.err) == 1);
  CHECK(contains(r.err, expect));
  CHECK(r.out.empty());
  CHECK(names_in(folder) == before);
}

// A folder with good operands A (4x3) and B (3x5), and an existing C.npy that must survive.
struct Fixture {
  TempDir tmp;
  Fixture() {
    std::mt19937_64 rng(11);
    test::write_file(tmp / "A.npy", test::npy_bytes(test::random_dense(4, 3, rng), DType::float64));
    test::write_file(tmp / "B.npy", test::npy_bytes(test::random_dense(3, 5, rng), DType::float64));
    test::write_file(tmp / "C.npy", "the previous result");
  }
  std::string p(const std::string& name) const { return (tmp / name).string(); }

  // Runs `shmgemm multiply ...` and checks the bad-input contract: non-zero exit, one line on
  // stderr containing `expect`, C.npy unchanged, no file added, no segment left.
  test::RunResult expect_failure(const std::vector<std::string>& args,
                                 const std::string& expect) const {
    const auto before = names_in(tmp.path());
    std::vector<std::string> argv = {test::cli_path(), "multiply"};
    argv.insert(argv.end(), args.begin(), args.end());
    const test::RunResult r = test::run(argv);
    CAPTURE(expect);
    CAPTURE(r.err);
    CHECK(r.status != 0);
    CHECK(r.status < 128);  // an error, not a crash
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, expect));
    CHECK(r.out.empty());
    CHECK(test::read_file(tmp / "C.npy") == "the previous result");
    CHECK(names_in(tmp.path()) == before);
    CHECK(test::segments_of(r.pid).empty());
    return r;
  }
};

}  // namespace

TEST_CASE(
    "test::Process returns once the program runs, not while the child has the test's handlers") {
  // doctest catches SIGTERM; a program started by test::Process that catches nothing must not
  // show SIGTERM caught, not even right after the fork.
  for (int i = 0; i < 20; ++i) {
    test::Process p({"/bin/sleep", "5"});
    CHECK_FALSE(test::handles(p.pid(), SIGTERM));
    ::kill(p.pid(), SIGKILL);
    CHECK(p.wait().status == 128 + SIGKILL);
  }
}

TEST_CASE("multiply succeeds, prints a summary or JSON, leaves nothing behind") {
  Fixture f;
  for (const char* launch : {"fork", "spawn"}) {
    for (const char* backing : {"file", "shm"}) {
      const test::RunResult r =
          test::run({test::cli_path(), "multiply", f.p("A.npy"), f.p("B.npy"), "-o", f.p("C.npy"),
                     "--launch", launch, "--backing", backing, "--workers", "2", "--json"});
      CAPTURE(r.err);
      REQUIRE(r.status == 0);
      const auto j = nlohmann::json::parse(r.out);
      CHECK(j["m"] == 4);
      CHECK(j["k"] == 3);
      CHECK(j["n"] == 5);
      CHECK(j["dtype"] == "float64");
      CHECK(j["workers"] == 2);
      CHECK(j["launch"] == launch);
      CHECK(j["backing"] == backing);
      CHECK(j["seconds"].get<double>() > 0);
      CHECK(j["compute_seconds"].get<double>() > 0);
      CHECK(j["compute_seconds"].get<double>() <= j["seconds"].get<double>());
      CHECK(test::segments_of(r.pid).empty());
      const test::Dense want =
          test::reference_product(test::read_npy(f.tmp / "A.npy"), test::read_npy(f.tmp / "B.npy"));
      CHECK(test::max_rel_diff(test::read_npy(f.tmp / "C.npy"), want) <=
            test::tolerance(DType::float64, 3));
      CHECK(names_in(f.tmp.path()) == std::vector<std::string>{"A.npy", "B.npy", "C.npy"});
    }
  }
  const test::RunResult human =
      test::run({test::cli_path(), "multiply", f.p("A.npy"), f.p("B.npy"), "-o", f.p("D.npy")});
  CHECK(human.status == 0);
  CHECK(count_lines(human.out) == 1);
  CHECK(contains(human.out, "(4,5) float64 = (4,3) @ (3,5)"));
}

TEST_CASE("--help answers for the program and every subcommand") {
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"},
                                        {"multiply", "--help"},
                                        {"gen", "--help"},
                                        {"demo", "--help"}}) {
    args.insert(args.begin(), test::cli_path());
    const test::RunResult r = test::run(args);
    CAPTURE(args[1]);
    CHECK(r.status == 0);
    CHECK(contains(r.out, "Usage"));
  }
  // Every value is named for what it is: no CLI11 "VALUE" or "TEXT" placeholders.
  for (const char* command : {"multiply", "gen", "demo", "gc", "calibrate", "bench", "footprint"}) {
    const test::RunResult r = test::run({test::cli_path(), command, "--help"});
    CAPTURE(command);
    CHECK(!contains(r.out, "VALUE"));
    CHECK(!contains(r.out, "TEXT"));
  }
  CHECK(contains(test::run({test::cli_path(), "footprint", "--help"}).out, "--csv FILE"));
  // Without a command: the short usage (the conventions' case below).
  const test::RunResult none = test::run({test::cli_path()});
  CHECK(none.status == 2);
  CHECK(contains(none.err, "usage: shmgemm"));
}

TEST_CASE("gen writes reproducible random matrices") {
  TempDir tmp;
  auto gen = [&](const std::string& name, const std::string& seed, const std::string& dtype) {
    return test::run({test::cli_path(), "gen", "--shape", "30x20", "--dtype", dtype, "--seed", seed,
                      "-o", (tmp / name).string()});
  };
  CHECK(gen("a.npy", "1", "float64").status == 0);
  CHECK(gen("b.npy", "1", "float64").status == 0);
  CHECK(gen("c.npy", "2", "float64").status == 0);
  CHECK(gen("d.npy", "2", "float32").status == 0);
  CHECK(test::read_file(tmp / "a.npy") == test::read_file(tmp / "b.npy"));
  CHECK(test::read_file(tmp / "a.npy") != test::read_file(tmp / "c.npy"));
  const test::Dense a = test::read_npy(tmp / "a.npy");
  CHECK(a.rows == 30);
  CHECK(a.cols == 20);
  for (double x : a.v)
    CHECK((x >= 0.0 && x < 1.0));
  CHECK(test::read_npy(tmp / "d.npy").rows == 30);
  const test::RunResult bad =
      test::run({test::cli_path(), "gen", "--shape", "30by20", "-o", (tmp / "e.npy").string()});
  CHECK(bad.status != 0);
  CHECK(contains(bad.err, "--shape '30by20'"));
  CHECK(!std::filesystem::exists(tmp / "e.npy"));
}

TEST_CASE("bad operand files: one line naming the file, nothing changed") {
  Fixture f;
  std::mt19937_64 rng(4);
  const std::string good = test::npy_bytes(test::random_dense(3, 5, rng), DType::float64);
  auto bad_b = [&](const std::string& bytes, const std::string& expect) {
    test::write_file(f.tmp / "bad.npy", bytes);
    const test::RunResult r =
        f.expect_failure({f.p("A.npy"), f.p("bad.npy"), "-o", f.p("C.npy")}, expect);
    CHECK(contains(r.err, "bad.npy: "));
  };
  f.expect_failure({f.p("missing.npy"), f.p("B.npy"), "-o", f.p("C.npy")},
                   "missing.npy: cannot open: No such file or directory");
  bad_b("just some text\n", "not a .npy file");
  bad_b(good.substr(0, 20), "truncated .npy header");
  bad_b(good.substr(0, good.size() - 1), "truncated data");
  bad_b(good + "more", "unexpected trailing data");
  auto with_dict = [](const std::string& dict) {
    std::string h = dict;
    h.append(118 - h.size() - 1, ' ');
    h += '\n';
    return std::string("\x93NUMPY\x01\x00\x76\x00", 10) + h;
  };
  bad_b(with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}"),
        "more elements than 64 bits");
  bad_b(with_dict("{'descr': '|b1', 'fortran_order': False, 'shape': (0, 0)}"),
        "unsupported dtype bool ('|b1'); supported: int8, int16");
  bad_b(with_dict("{'descr': '<f2', 'fortran_order': False, 'shape': (0, 0)}"),
        "unsupported dtype float16 ('<f2'); supported: int8");
  bad_b(with_dict("{'descr': '>f8', 'fortran_order': False, 'shape': (0, 0)}"),
        "big-endian float64");
  bad_b(with_dict("{'descr': '|O', 'fortran_order': False, 'shape': (0, 0)}"), "object arrays");
  // Shapes np.matmul refuses, named as numpy names them.
  test::write_file(f.tmp / "bad.npy", with_dict("{'descr': '<f8', 'fortran_order': False, "
                                                "'shape': (0,)}"));
  f.expect_failure({f.p("A.npy"), f.p("bad.npy"), "-o", f.p("C.npy")},
                   "bad.npy (0,): matmul: Input operand 1 has a mismatch in its core dimension 0");
  test::write_file(
      f.tmp / "bad.npy",
      with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': ()}") + std::string(8, '\0'));
  f.expect_failure({f.p("A.npy"), f.p("bad.npy"), "-o", f.p("C.npy")},
                   "bad.npy (): matmul: Input operand 1 does not have enough dimensions (has 0");
  f.expect_failure({f.p("A.npy"), f.p(""), "-o", f.p("C.npy")}, "is a directory");
}

TEST_CASE("shapes and dtypes that do not multiply") {
  Fixture f;
  std::mt19937_64 rng(4);
  test::write_file(f.tmp / "X.npy", test::npy_bytes(test::random_dense(5, 6, rng), DType::float64));
  f.expect_failure({f.p("A.npy"), f.p("X.npy"), "-o", f.p("C.npy")},
                   "(4,3) @ " + f.p("X.npy") +
                       " (5,6): matmul: Input operand 1 has a mismatch in its core dimension 0, "
                       "with gufunc signature (n?,k),(k,m?)->(n?,m?) (size 5 is different from 3)");
  test::write_file(f.tmp / "F.npy", test::npy_bytes(test::random_dense(5, 3, rng), DType::float32));
  f.expect_failure({f.p("A.npy"), f.p("F.npy"), "-o", f.p("C.npy")},
                   "(size 5 is different from 3)");
}

TEST_CASE("bad outputs and options") {
  Fixture f;
  const std::string a = f.p("A.npy"), b = f.p("B.npy"), c = f.p("C.npy");
  f.expect_failure({a, b, "-o", f.p("nowhere/C.npy")}, "does not exist");
  f.expect_failure({a, b, "-o", f.p("A.npy/C.npy")}, "is not a folder");
  if (::geteuid() != 0) {
    std::filesystem::create_directory(f.tmp / "ro");
    std::filesystem::permissions(
        f.tmp / "ro", std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    f.expect_failure({a, b, "-o", f.p("ro/C.npy")}, "is not writable");
    std::filesystem::remove(f.tmp / "ro");
  }
  for (const char* bad : {"0", "-1", "abc", "2.5", "257", ""})
    f.expect_failure({a, b, "-o", c, "--workers", bad}, "--workers");
  f.expect_failure({a, b, "-o", c, "--threads", "0"}, "--threads");
  f.expect_failure({a, b, "-o", c, "--launch", "thread"}, "--launch");
  f.expect_failure({a, b, "-o", c, "--backing", "disk"}, "--backing");
  f.expect_failure({a, b, "-o", c, "--frobnicate"}, "--frobnicate");
  f.expect_failure({a, b}, "--output");
}

TEST_CASE("bench runs every variant side by side and reports the checks") {
  TempDir tmp;
  const std::string csv = (tmp / "bench.csv").string();
  // (Under the sanitizers, whose processes start slower, one round.)
  const int rounds = test::kSanitized ? 1 : 3;
  const test::RunResult r = test::run({test::cli_path(), "bench", "--shapes", "48,20x300x10",
                                       "--rounds", std::to_string(rounds), "--json", "--csv", csv});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["rounds"] == rounds);
  CHECK(j["launch_fork_2_workers_us"].get<double>() > 0);
  CHECK(j["launch_spawn_2_workers_us"].get<double>() > 0);
  const unsigned cores = j["cores"];
  // The limit, auto, fork and spawn with 1..cores workers, in process, and three peers when
  // available.
  const std::size_t per_shape = 3 + 2 * cores + (j["peers"].get<bool>() ? 3 : 0);
  CHECK(j["results"].size() == 2 * per_shape);
  std::map<std::string, double> limit;  // per shape: the limit row's seconds
  for (const auto& row : j["results"])
    if (row["variant"].get<std::string>().rfind("limit: ", 0) == 0)
      limit[row["shape"]] = row["seconds"];
  CHECK(limit.size() == 2);
  for (const auto& row : j["results"]) {
    // Every row against the limit: its seconds over the row's.
    CHECK(row["vs_limit"].get<double>() ==
          doctest::Approx(limit[row["shape"]] / row["seconds"].get<double>()));
    CAPTURE(row.dump());
    CHECK(row["seconds"].get<double>() > 0);
    CHECK(row["wall_seconds"].get<double>() >= row["seconds"].get<double>());
    CHECK(row["peak_pss_mib"].get<double>() >= 0);
    // A Python peer outlives the 5 ms sampling interval, so its memory is always sampled.
    if (row["variant"] == "joblib recipe") CHECK(row["peak_pss_mib"].get<double>() > 10);
    if (row["variant"] == "OpenBLAS in process") CHECK(row["ratio_vs_openblas"] == 1.0);
  }
  CHECK(j["auto_checks"].size() == 2);
  CHECK(test::count_lines(test::read_file(csv)) == 1 + 2 * per_shape);
}

TEST_CASE("footprint's table shows measurements, not acceptance bounds") {
  const test::RunResult r = test::run({test::cli_path(), "footprint", "--shape", "200x200x200",
                                       "--workers", "1", "--modes", "file"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "| file | 1 |"));
  for (const char* word : {"target", "within", "OVER"})
    CHECK(!contains(r.out, word));
}

TEST_CASE("footprint measures every mode; zero-copy stays near the floor, copy grows by B") {
  TempDir tmp;
  const std::string csv = (tmp / "fp.csv").string();
  const std::string png = (tmp / "fp.png").string();
  // B is large against A and C, and each worker computes for 0.04-0.1 s (by the machine).
  const double m = 1000, k = 2000, n = 2000;
  const test::RunResult r =
      test::run({test::cli_path(), "footprint", "--shape", "1000x2000x2000", "--workers", "1,2",
                 "--interval-ms", "2", "--json", "--csv", csv, "--plot", png});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto rows = nlohmann::json::parse(r.out);
  REQUIRE(rows.size() == 8);  // 4 modes x 2 worker counts
  const double mib = 1 << 20;
  const double b_mib = k * n * 8 / mib;
  const double floor_mib = (m * k + k * n + m * n) * 8 / mib;
  std::map<std::string, std::map<unsigned, double>> peak;
  for (const auto& row : rows) {
    CAPTURE(row.dump());
    const double floor = row["floor_mib"];
    CHECK(floor == doctest::Approx(floor_mib).epsilon(0.01));
    const double pss = row["peak_pss_mib"];
    const unsigned workers = row["workers"];
    peak[row["mode"]][workers] = pss;
    // Every mode holds A, B and C; zero-copy ones little more.
    CHECK(pss > 0.5 * floor);
  }
  // The target holds for the real build; AddressSanitizer's shadow memory and quarantine make
  // every process of a sanitizer build larger. A sampled peak is only ever inflated (a busy
  // machine: another process's share of a library page, a late sample), so the zero-copy modes
  // are held to their smallest peak of up to three runs.
#ifndef __SANITIZE_ADDRESS__
  for (int run = 0;; ++run) {
    bool over = false;
    for (const char* mode : {"shm", "file"})
      for (unsigned workers : {1u, 2u})
        over = over || peak[mode][workers] > floor_mib + 16 + 4.0 * workers;
    if (!over || run == 2) break;
    const test::RunResult again =
        test::run({test::cli_path(), "footprint", "--shape", "1000x2000x2000", "--workers", "1,2",
                   "--modes", "shm,file", "--interval-ms", "2", "--json"});
    REQUIRE(again.status == 0);
    for (const auto& row : nlohmann::json::parse(again.out)) {
      double& best = peak[row["mode"]][row["workers"].get<unsigned>()];
      best = std::min(best, row["peak_pss_mib"].get<double>());
    }
  }
  for (const char* mode : {"shm", "file"})
    for (unsigned workers : {1u, 2u}) {
      CAPTURE(mode);
      CAPTURE(workers);
      CHECK(peak[mode][workers] <= floor_mib + 16 + 4.0 * workers);
    }
#endif
  // Each extra copying worker holds another B. On a busy machine (ctest -j2) the sampler can
  // miss the moment both copies are held (10 MiB more instead of 30 seen once), so up to three
  // runs: the largest peak with two workers against the smallest with one.
  for (int run = 0; run < 2 && peak["copy"][2] - peak["copy"][1] < 0.6 * b_mib; ++run) {
    const test::RunResult again =
        test::run({test::cli_path(), "footprint", "--shape", "1000x2000x2000", "--workers", "1,2",
                   "--modes", "copy", "--interval-ms", "2", "--json"});
    REQUIRE(again.status == 0);
    for (const auto& row : nlohmann::json::parse(again.out)) {
      const unsigned workers = row["workers"].get<unsigned>();
      double& kept = peak["copy"][workers];
      const double pss = row["peak_pss_mib"].get<double>();
      kept = workers == 2 ? std::max(kept, pss) : std::min(kept, pss);
    }
  }
  CHECK(peak["copy"][2] - peak["copy"][1] >= 0.6 * b_mib);
  const std::string text = test::read_file(csv);
  CHECK(text.rfind("mode,workers,m,k,n,dtype,floor_mib,peak_pss_mib,peak_worker_uss_mib,seconds\n",
                   0) == 0);
  CHECK(test::count_lines(text) == 9);
  CHECK(test::read_file(png).rfind("\x89PNG", 0) == 0);
}

TEST_CASE(
    "one rule for every output: mode and owner kept, symlinks followed, special files refused") {
  namespace fs = std::filesystem;
  Fixture f;
  const std::string a = f.p("A.npy"), b = f.p("B.npy");
  const std::string expected = [&] {
    REQUIRE(test::run({test::cli_path(), "multiply", a, b, "-o", f.p("ref.npy")}).status == 0);
    const std::string bytes = test::read_file(f.tmp / "ref.npy");
    fs::remove(f.tmp / "ref.npy");
    return bytes;
  }();
  // Each writer: multiply, and gen (whose bytes are its own, checked for the .npy magic).
  auto write = [&](const std::string& out, bool gen) {
    return gen ? test::run({test::cli_path(), "gen", "--shape", "4x5", "-o", out})
               : test::run({test::cli_path(), "multiply", a, b, "-o", out});
  };
  auto wrote = [&](const fs::path& file, bool gen) {
    const std::string bytes = test::read_file(file);
    return gen ? bytes.rfind("\x93NUMPY", 0) == 0 : bytes == expected;
  };
  for (bool gen : {false, true}) {
    CAPTURE(gen);
    // A private regular file stays private, and keeps its owner.
    const fs::path priv = f.tmp / "private.npy";
    test::write_file(priv, "old");
    ::chmod(priv.c_str(), 0600);
    const bool root = ::geteuid() == 0;
    if (root) REQUIRE(::chown(priv.c_str(), 65534, 65534) == 0);
    const test::RunResult r1 = write(priv.string(), gen);
    CAPTURE(r1.err);
    CHECK(r1.status == 0);
    struct stat st {};
    REQUIRE(::stat(priv.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    if (root) CHECK(st.st_uid == 65534);
    if (root) CHECK(st.st_gid == 65534);
    CHECK(wrote(priv, gen));

    // A symlink is followed: the link stays, the file it names is replaced; a dangling one
    // creates the file it names, as np.save does.
    fs::create_directory(f.tmp / "real");
    test::write_file(f.tmp / "real" / "target.npy", "old");
    fs::create_symlink("real/target.npy", f.tmp / "link.npy");
    CHECK(write(f.p("link.npy"), gen).status == 0);
    CHECK(fs::is_symlink(f.tmp / "link.npy"));
    CHECK(wrote(f.tmp / "real" / "target.npy", gen));
    fs::create_symlink("real/new.npy", f.tmp / "dangling.npy");
    CHECK(write(f.p("dangling.npy"), gen).status == 0);
    CHECK(fs::is_symlink(f.tmp / "dangling.npy"));
    CHECK(wrote(f.tmp / "real" / "new.npy", gen));
    fs::remove_all(f.tmp / "real");
    fs::remove(f.tmp / "link.npy");
    fs::remove(f.tmp / "dangling.npy");
    fs::remove(priv);
  }

  // A FIFO, a socket and (as root) a character device are refused before any work: one line,
  // nothing replaced.
  const fs::path fifo = f.tmp / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  f.expect_failure({a, b, "-o", fifo.string()}, "is a FIFO, not a regular file");
  CHECK(fs::is_fifo(fifo));
  const test::RunResult g = test::run({test::cli_path(), "gen", "--shape", "3", "-o", fifo});
  CHECK(g.status == 1);
  CHECK(contains(g.err, "is a FIFO"));
  CHECK(fs::is_fifo(fifo));
  fs::remove(fifo);
  const fs::path sock = f.tmp / "sock";
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  f.expect_failure({a, b, "-o", sock.string()}, "is a socket, not a regular file");
  CHECK(fs::is_socket(sock));
  ::close(s);
  fs::remove(sock);
  if (::geteuid() == 0) {
    const fs::path dev = f.tmp / "null";
    REQUIRE(::mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    f.expect_failure({a, b, "-o", dev.string()}, "is a character device, not a regular file");
    CHECK(fs::is_character_file(dev));
    fs::remove(dev);
  }
}

TEST_CASE("an output name too long for its temporary name fails before computing") {
  Fixture f;
  const std::string a = f.p("A.npy"), b = f.p("B.npy");
  // 240 characters fit in NAME_MAX; the temporary name beside it is shortened to fit too.
  const std::string long_name = std::string(236, 'c') + ".npy";
  const test::RunResult r = test::run({test::cli_path(), "multiply", a, b, "-o", f.p(long_name)});
  CAPTURE(r.err);
  CHECK(r.status == 0);
  CHECK(std::filesystem::exists(f.tmp / long_name));
  std::filesystem::remove(f.tmp / long_name);
  // 256 do not: refused at once.
  f.expect_failure({a, b, "-o", f.p(std::string(252, 'c') + ".npy")}, "file name too long");
}

TEST_CASE("--fsync writes C and then the folder to disk around the rename; without it, neither") {
  if (::access("/usr/bin/strace", X_OK) != 0) {
    SKIP_CASE("needs strace to see the system calls");
  }
  Fixture f;
  for (bool durable : {false, true}) {
    CAPTURE(durable);
    const std::string trace = f.p(durable ? "trace-fsync" : "trace-plain");
    std::vector<std::string> argv = {"/usr/bin/strace",
                                     "-f",
                                     "-e",
                                     "trace=fdatasync,fsync,rename",
                                     "-o",
                                     trace,
                                     test::cli_path(),
                                     "multiply",
                                     f.p("A.npy"),
                                     f.p("B.npy"),
                                     "-o",
                                     f.p("C.npy")};
    if (durable) argv.push_back("--fsync");
    // LeakSanitizer cannot run under ptrace (make sanitize).
    const test::RunResult r = test::run(argv, {"ASAN_OPTIONS=detect_leaks=0"});
    CAPTURE(r.err);
    if (r.status != 0 && contains(r.err, "PTRACE")) {
      SKIP_CASE("ptrace is not permitted here");
    }
    REQUIRE(r.status == 0);
    const std::string calls = test::read_file(trace);
    CAPTURE(calls);
    const std::size_t data = calls.find("fdatasync("), rename = calls.find("rename("),
                      folder = calls.find("fsync(", rename == std::string::npos ? 0 : rename);
    REQUIRE(rename != std::string::npos);
    if (durable) {
      CHECK(data < rename);                // C reaches the disk before it takes the name
      CHECK(folder != std::string::npos);  // and the folder's entry after
    } else {
      CHECK(data == std::string::npos);
      CHECK(folder == std::string::npos);
    }
    CHECK(test::read_file(f.tmp / "C.npy").rfind("\x93NUMPY", 0) == 0);
  }
}

TEST_CASE("messages that quote a file's bytes stay one line and cannot rewrite the terminal") {
  Fixture f;
  auto with_dict = [](const std::string& dict) {
    std::string h = dict;
    h.append(118 - h.size() - 1, ' ');
    h += '\n';
    return std::string("\x93NUMPY\x01\x00\x76\x00", 10) + h;
  };
  for (const std::string& dict :
       {std::string("{'descr': '<f8', '\r\x1b[2Kshmgemm: all good\n': 1}"),
        std::string("{'descr': '<f\n8\x1b[2K', 'fortran_order': False, 'shape': (0, 0)}")}) {
    test::write_file(f.tmp / "evil.npy", with_dict(dict));
    const test::RunResult r =
        f.expect_failure({f.p("A.npy"), f.p("evil.npy"), "-o", f.p("C.npy")}, "evil.npy: ");
    CHECK(r.err.find('\x1b') == std::string::npos);
    CHECK(r.err.find('\r') == std::string::npos);
    CHECK(contains(r.err, "\\x1b[2K"));
  }
  // A file name with a newline is named on one line too.
  test::write_file(f.tmp / "two\nlines.npy", "not numpy");
  const test::RunResult r = f.expect_failure(
      {f.p("A.npy"), f.p("two\nlines.npy"), "-o", f.p("C.npy")}, "two\\nlines.npy");
}

TEST_CASE(
    "a descr without its byte-order character, as numpy reads it, and short option messages") {
  Fixture f;
  // numpy reads 'f8' as native float64 ('<f8' here).
  std::string b = test::read_file(f.tmp / "B.npy");
  const std::size_t at = b.find("'<f8'");
  REQUIRE(at != std::string::npos);
  b.replace(at, 5, "'f8' ");
  test::write_file(f.tmp / "B2.npy", b);
  CHECK(test::run({test::cli_path(), "multiply", f.p("A.npy"), f.p("B2.npy"), "-o", f.p("C2.npy")})
            .status == 0);
  CHECK(test::run({test::cli_path(), "multiply", f.p("A.npy"), f.p("B.npy"), "-o", f.p("C1.npy")})
            .status == 0);
  CHECK(test::read_file(f.tmp / "C1.npy") == test::read_file(f.tmp / "C2.npy"));
  std::filesystem::remove(f.tmp / "B2.npy");
  std::filesystem::remove(f.tmp / "C1.npy");
  std::filesystem::remove(f.tmp / "C2.npy");
  for (const char* option : {"--rows-per-step", "--timeout"}) {
    const test::RunResult r =
        f.expect_failure({f.p("A.npy"), f.p("B.npy"), "-o", f.p("C.npy"), option, "0"}, option);
    CHECK(r.err.size() < 100);  // not DBL_MAX written out in full
  }
}

TEST_CASE("the command line's conventions: --version, help, suggestions, exit statuses") {
  Fixture f;
  const std::string a = f.p("A.npy"), b = f.p("B.npy"), c = f.p("C.npy");
  const std::string cli = test::cli_path();
  for (const char* flag : {"--version", "-V"}) {
    const test::RunResult r = test::run({cli, flag});
    CHECK(r.status == 0);
    CHECK(contains(r.out, "shmgemm "));
    CHECK(contains(r.out, "OpenBLAS 0."));  // openblas_get_config()
    CHECK(contains(r.out, "OpenBLAS kernel: "));
  }
  {
    const test::RunResult r = test::run({cli, "help"});
    CHECK(r.status == 0);
    CHECK(contains(r.out, "multiply"));
    const test::RunResult m = test::run({cli, "help", "multiply"});
    CHECK(m.status == 0);
    CHECK(contains(m.out, "Usage: shmgemm multiply"));
  }
  // A mistyped subcommand or option: the nearest suggested, the subcommand's --help named.
  auto usage = [&](const std::vector<std::string>& args, const std::string& expect) {
    expect_usage_error(args, expect, f.tmp.path());
    CHECK(test::read_file(f.tmp / "C.npy") == "the previous result");
  };
  usage({"multiplyy", a, b}, "unknown command 'multiplyy' (did you mean 'multiply'?)");
  usage({"multiply", a, b, "-o", c, "--workerz", "2"},
        "unknown option '--workerz' (did you mean --workers?); run 'shmgemm multiply --help'");
  usage({"multiply", a, b, "-o", c, "--frobnicate"}, "run 'shmgemm multiply --help'");
  // Usage errors exit 2 in every subcommand; failures exit 1.
  usage({"gen", "--shape", "abc", "-o", f.p("G.npy")}, "--shape 'abc'");
  usage({"gen", "--shape", "3x3", "--seed", "-1", "-o", f.p("G.npy")}, "--seed: '-1'");
  usage({"bench", "--shapes", "abc"}, "--shapes 'abc'");
  usage({"footprint", "--workers", "0"}, "--workers '0'");
  usage({"demo", "--frob"}, "run 'shmgemm demo --help'");
  usage({"calibrate", "--frob"}, "run 'shmgemm calibrate --help'");
  usage({"gc", "--frob"}, "run 'shmgemm gc --help'");
  usage({"multiply", a, b, "-o", c, "--hostfile", f.p("hosts")},
        "--hostfile: only with --launch mpi");
  usage({"multiply", a, b, "-o", c, "--backing", "shm", "--rows-per-step", "10"},
        "--rows-per-step");
  usage({"multiply", a, b, "-o", c, "--backing", "shm", "--memory", "1G"},
        "--memory: out of core needs --backing file");
  usage({"multiply", a, b, "-o", c, "--memory", "lots"}, "--memory");
  usage({"multiply", a, b, "-o", c, "--workers", "0"}, "--workers");
  usage({"multiply", a, b, "-o", c, "--workers", "AUTO"}, "neither auto nor a whole number");
  usage({"multiply", a, b, "-o", c, "--retries", "200"}, "'200' is not a whole number from 0");
  // Conflicting options are refused, not ignored.
  for (const std::vector<std::string>& conflict :
       {std::vector<std::string>{"--workers", "2"}, {"--launch", "spawn"}, {"--backing", "shm"}}) {
    std::vector<std::string> args = {"multiply", a, b, "-o", c, "--in-process"};
    args.insert(args.end(), conflict.begin(), conflict.end());
    usage(args, "--in-process: " + conflict[0] + " does not apply");
  }
  usage({"multiply", a, b, "-o", "-"}, "--output -: writing to standard output is not supported");
  CHECK(!std::filesystem::exists("-"));
  // A failure, not a usage error: exit 1.
  f.expect_failure({f.p("missing.npy"), b, "-o", c}, "missing.npy");
  // The exit status comes from the error, not from its text: an output in a folder that is not
  // there is a failure, even when its name begins like an option.
  {
    const test::RunResult r = test::run({cli, "multiply", a, b, "--output=--no-such-folder/C.npy"});
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "shmgemm: --no-such-folder/C.npy: "));
  }
  CHECK(test::run({cli, "multiply", f.p("missing.npy"), b, "-o", c}).status == 1);
  // An .npz says what it is and how to get an array out of it.
  test::write_file(f.tmp / "Z.npz", std::string("PK\x03\x04", 4) + "zip bytes");
  f.expect_failure({f.p("Z.npz"), b, "-o", c}, "a .npz archive (np.savez");
  f.expect_failure({f.p("Z.npz"), b, "-o", c},
                   "np.load('" + f.p("Z.npz") + "'); np.save('" + f.p("Z") + ".npy'");
  // gen says what it wrote, and refuses what the disk cannot hold before writing anything.
  const test::RunResult g = test::run({cli, "gen", "--shape", "3x4", "-o", f.p("G.npy")});
  CHECK(g.status == 0);
  CHECK(contains(g.out, "G.npy: (3,4) float64, 96 bytes written"));
  std::filesystem::remove(f.tmp / "G.npy");
  const test::RunResult huge =
      test::run({cli, "gen", "--shape", "100000x100000x1000", "-o", f.p("G.npy")});
  CHECK(huge.status == 1);
  CHECK(contains(huge.err, "free"));
  CHECK(!std::filesystem::exists(f.tmp / "G.npy"));
  // Help without CLI11's type clutter; defaults in words.
  const test::RunResult help = test::run({cli, "multiply", "--help"});
  CHECK(!contains(help.out, "UINT"));
  CHECK(!contains(help.out, "TEXT:"));
  CHECK(contains(help.out, "auto (the default)"));
}

TEST_CASE(
    "the conventions git's and rg's users expect: a bare command, --version anywhere, "
    "suggested values, numpy's dtype spellings, the last of a repeated option") {
  TempDir tmp;
  const std::string cli = test::cli_path();
  // A bare `shmgemm`: a short usage naming every command, exit 2.
  {
    const test::RunResult r = test::run({cli});
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(contains(r.err, "usage: shmgemm COMMAND [OPTIONS]"));
    for (const char* command : {"multiply", "gen", "demo", "gc", "calibrate", "bench", "footprint"})
      CHECK(contains(r.err, std::string("  ") + command));
  }
  // --help lists --version; a subcommand takes --version as the program does.
  CHECK(contains(test::run({cli, "--help"}).out, "-V,--version"));
  {
    const test::RunResult r = test::run({cli, "multiply", "--version"});
    CHECK(r.status == 0);
    CHECK(contains(r.out, "OpenBLAS kernel: "));
  }
  // One line, exit 2, the nearest suggested.
  auto usage = [&](const std::vector<std::string>& args, const std::string& expect) {
    expect_usage_error(args, expect, tmp.path());
  };
  usage({"--verison"}, "unknown option '--verison' (did you mean --version?)");
  usage({"-v"}, "unknown option '-v' (did you mean --version?)");
  usage({"help", "multiplyy"}, "unknown command 'multiplyy' (did you mean 'multiply'?)");
  const std::string out = (tmp / "G.npy").string();
  usage({"gen", "--shape", "3", "--dtype", "flaot64", "-o", out},
        "--dtype: 'flaot64' is not one of int8, ");
  usage({"gen", "--shape", "3", "--dtype", "flaot64", "-o", out}, "(did you mean 'float64'?)");
  usage({"gen", "--shape", "3", "--dtype", ">f8", "-o", out}, "'>f8' is not one of");
  usage({"multiply", "A.npy", "B.npy", "-o", out, "--launch", "forkk"},
        "--launch: 'forkk' is not one of auto, fork, spawn");
  usage({"multiply", "A.npy", "B.npy", "-o", out, "--backing", "shmm"}, "(did you mean 'shm'?)");
  // numpy's spellings of a dtype mean what np.dtype() makes of them here.
  for (const auto& [spelling, name] :
       std::vector<std::pair<std::string, std::string>>{{"f8", "float64"},
                                                        {"double", "float64"},
                                                        {"float", "float64"},
                                                        {"int", "int64"},
                                                        {"<i8", "int64"},
                                                        {"complex", "complex128"},
                                                        {"f4", "float32"},
                                                        {"|u1", "uint8"},
                                                        {"intc", "int32"}}) {
    CAPTURE(spelling);
    const test::RunResult r =
        test::run({cli, "gen", "--shape", "2", "--dtype", spelling, "-o", out});
    CHECK(r.status == 0);
    CHECK(contains(r.out, "(2,) " + name + ", "));
    std::filesystem::remove(out);
  }
  // A file name that begins with '-': said so, not "B is required".
  usage({"multiply", "-x.npy", "s43.npy", "-o", out},
        "'-x.npy' begins with '-' and reads as an option; for a file of that name write ./-x.npy");
  // Messages name the user's files, never a descriptor's /proc path, even out of descriptors.
  // (Not in the sanitizer build: its runtime needs descriptors of its own to report anything.)
#ifndef __SANITIZE_ADDRESS__
  {
    const std::string a = (tmp / "A.npy").string();
    CHECK(test::run({cli, "gen", "--shape", "300x300", "-o", a}).status == 0);
    const test::RunResult r = test::run(
        {"/bin/sh", "-c",
         "ulimit -n 8; exec \"$0\" multiply \"$1\" \"$1\" -o \"$2\" --workers 2 --launch fork", cli,
         a, out});
    CAPTURE(r.err);
    CHECK(r.status == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(!contains(r.err, "/proc/"));
    CHECK(contains(r.err, "Too many open files"));
    std::filesystem::remove(a);
  }
#endif
  // A repeated option: the last one counts.
  const test::RunResult twice = test::run(
      {cli, "gen", "--shape", "2x2", "--shape", "3", "--seed", "1", "--seed", "2", "-o", out});
  CAPTURE(twice.err);
  CHECK(twice.status == 0);
  CHECK(contains(twice.out, "(3,) float64"));
  const std::string seeded = test::read_file(out);
  std::filesystem::remove(out);
  CHECK(test::run({cli, "gen", "--shape", "3", "--seed", "2", "-o", out}).status == 0);
  CHECK(test::read_file(out) == seeded);
}

TEST_CASE("the summary and --json give the operands' and the result's real shapes") {
  TempDir tmp;
  const std::string cli = test::cli_path(), out = (tmp / "C.npy").string();
  auto write = [&](const std::string& name, const std::string& shape) {
    REQUIRE(test::run({cli, "gen", "--shape", shape, "-o", (tmp / name).string()}).status == 0);
  };
  write("M.npy", "300x200");
  write("v.npy", "200");
  write("S.npy", "3x1x40x50");
  write("T.npy", "2x50x60");
  const test::RunResult vec =
      test::run({cli, "multiply", (tmp / "M.npy").string(), (tmp / "v.npy").string(), "-o", out});
  CHECK(vec.status == 0);
  CHECK(contains(vec.out, ": (300,) float64 = (300,200) @ (200,) in "));
  const test::RunResult stack = test::run(
      {cli, "multiply", (tmp / "S.npy").string(), (tmp / "T.npy").string(), "-o", out, "--json"});
  REQUIRE(stack.status == 0);
  const auto j = nlohmann::json::parse(stack.out);
  CHECK(j["a_shape"] == nlohmann::json({3, 1, 40, 50}));
  CHECK(j["b_shape"] == nlohmann::json({2, 50, 60}));
  CHECK(j["shape"] == nlohmann::json({3, 2, 40, 60}));
  // OPENBLAS_NUM_THREADS bounds the threads a plan gives a process, as numpy's OpenBLAS obeys.
  const test::RunResult one =
      test::run({cli, "multiply", (tmp / "S.npy").string(), (tmp / "T.npy").string(), "-o", out,
                 "--json", "--in-process"},
                {"OPENBLAS_NUM_THREADS=1"});
  REQUIRE(one.status == 0);
  CHECK(nlohmann::json::parse(one.out)["threads_per_worker"] == 1);
  // A plan's reason agrees with what ran: 8 workers asked for 3 rows run 3.
  write("R.npy", "3x300");
  const test::RunResult few =
      test::run({cli, "multiply", (tmp / "R.npy").string(), (tmp / "M.npy").string(), "-o", out,
                 "--json", "--workers", "8"});
  REQUIRE(few.status == 0);
  const auto k = nlohmann::json::parse(few.out);
  CHECK(k["workers"] == 3);
  CHECK(contains(k["plan"]["reason"].get<std::string>(), "3 workers"));
  // --explain says when the plan passed over workers predicted faster than in process.
  write("Q.npy", "1500x1500");
  const test::RunResult why =
      test::run({cli, "multiply", (tmp / "Q.npy").string(), (tmp / "Q.npy").string(), "-o", out,
                 "--json", "--explain"});
  REQUIRE(why.status == 0);
  if (nlohmann::json::parse(why.out)["in_process"].get<bool>())
    CHECK(contains(why.err, "workers are chosen only when predicted at least 3% faster"));
  else
    CHECK(contains(why.err, "predicted"));
}

TEST_CASE("bench waits for what a measured program left running before it runs the next") {
  // Peers that each leave a sleeping process behind (a helper, as joblib's loky leaves), and
  // note on starting whether the one an earlier peer left is still alive.
  TempDir tmp;
  const std::filesystem::path peers = tmp / "peers";
  std::filesystem::create_directories(peers);
  const std::string script = fmt::format(
      "import json, os, subprocess\n"
      "state = '{0}'\n"
      "try:\n"
      "    pid = int(open(state + '.pid').read())\n"
      "    os.kill(pid, 0)\n"
      "    open(state + '.overlaps', 'a').write(f'{{pid}}\\n')\n"
      "except (OSError, ValueError):\n"
      "    pass\n"
      "left = subprocess.Popen(['/bin/sleep', '0.4'], start_new_session=True)\n"
      "open(state + '.pid', 'w').write(str(left.pid))\n"
      "print(json.dumps({{'seconds': 0.001}}))\n",
      (tmp / "orphan").string());
  for (const char* name : {"numpy_matmul.py", "joblib_recipe.py", "mp_recipe.py"})
    test::write_file(peers / name, script);
  const test::RunResult r = test::run({test::cli_path(), "bench", "--shapes", "16", "--rounds", "2",
                                       "--peers-dir", peers.string(), "--json"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(std::filesystem::exists(tmp / "orphan.pid"));  // the peers ran
  CHECK(!std::filesystem::exists(tmp / "orphan.overlaps"));
}

TEST_CASE("bench says why peers are missing, and calls a ratio between the same plans noise") {
  const test::RunResult r = test::run({test::cli_path(), "bench", "--shapes", "64", "--rounds", "3",
                                       "--peers-dir", "/nonexistent/peers"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "(peers skipped: no peer scripts in /nonexistent/peers)"));
  // 64^3 runs in process under the automatic plan, as the in-process variant does. Which
  // alternative is the faster is measured: on a loaded machine a fork variant can beat two
  // threads on 64^3. The note follows the plans, not the times.
  const std::size_t at = r.out.find("  64: auto ");
  REQUIRE(at != std::string::npos);
  const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
  CAPTURE(line);
  if (contains(line, "best OpenBLAS in process "))
    CHECK(contains(line, "(the same plan: the difference is noise)"));
  else
    CHECK(!contains(line, "the same plan"));  // a fork or spawn plan against in process
}

TEST_CASE("OpenBLAS's kernels follow the CPU's features where OpenBLAS does not know the CPU") {
  const std::string cli = test::cli_path();
  // As a user's shell runs it: no OPENBLAS_CORETYPE (this test program's own OpenBLAS may have
  // set one for its children). OPENBLAS_VERBOSE=2 makes OpenBLAS print its own choice as it
  // loads ("Core: Prescott"), before shmgemm's initialiser runs.
  const test::RunResult r =
      test::run({"/usr/bin/env", "-u", "OPENBLAS_CORETYPE", "OPENBLAS_VERBOSE=2", cli, "-V"});
  REQUIRE(r.status == 0);
  const std::size_t at = r.err.find("Core: ");
  REQUIRE(at != std::string::npos);
  const std::string own = r.err.substr(at + 6, r.err.find('\n', at) - at - 6);
  std::ifstream cpuinfo("/proc/cpuinfo");
  const std::string info((std::istreambuf_iterator<char>(cpuinfo)), {});
  CAPTURE(own);
  CAPTURE(r.out);
  if (own == "Prescott" && contains(info, " avx2 ")) {
    // The fallback replaced: by the features' kernel, said on --version, and in effect.
    CHECK(contains(r.out, "chosen by shmgemm: OpenBLAS falls back to Prescott"));
    CHECK(contains(r.out, "gives other programs, numpy among them, the same kernels"));
    CHECK(!contains(r.out, "kernel: Prescott"));
    CHECK(contains(r.err.substr(at + 6), "Core: "));  // OpenBLAS initialised a second time
  } else {
    CHECK(contains(r.out, "kernel: " + own + "\n"));  // OpenBLAS's own choice kept
    CHECK(!contains(r.out, "chosen by shmgemm"));
  }
  // A user's OPENBLAS_CORETYPE is left as it is, even the fallback's.
  const test::RunResult kept = test::run({cli, "-V"}, {"OPENBLAS_CORETYPE=Prescott"});
  CHECK(contains(kept.out, "kernel: Prescott\n"));
}

TEST_CASE("the calibration cache holds for the same CPU with fewer cores, not for another CPU") {
  TempDir tmp;
  const std::string cli = test::cli_path();
  const std::vector<std::string> env = {"XDG_CACHE_HOME=" + tmp.path().string()};
  REQUIRE(test::run({cli, "calibrate"}, env).status == 0);
  const std::filesystem::path cache = tmp / "shmgemm" / "calibration.json";
  REQUIRE(std::filesystem::exists(cache));
  for (const char* name : {"A.npy", "B.npy"})
    REQUIRE(test::run({cli, "gen", "--shape", "1000x1000", "-o", (tmp / name).string()}).status ==
            0);
  auto calibration_used = [&] {
    const test::RunResult r =
        test::run({cli, "multiply", (tmp / "A.npy").string(), (tmp / "B.npy").string(), "-o",
                   (tmp / "C.npy").string(), "--json"},
                  env);
    REQUIRE(r.status == 0);
    return nlohmann::json::parse(r.out)["plan"]["calibration"].get<std::string>();
  };
  CHECK(calibration_used() == cache.string());
  auto edit = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(test::read_file(cache));
    j[key] = value;
    test::write_file(cache, j.dump());
  };
  // Measured with more cores than this process may use (taskset, mpirun's binding): kept.
  edit("cores", 64);
  CHECK(contains(calibration_used(), "(measured with 64 cores;"));
  edit("cpu", "Another CPU");
  CHECK(contains(calibration_used(), "built-in defaults"));
}

TEST_CASE("demo: the square product, then an int64 product where shmgemm wins, each checked") {
  TempDir tmp;
  const test::RunResult r = test::run({test::cli_path(), "demo", "--size", "200", "--rounds", "1"},
                                      {"TMPDIR=" + tmp.path().string()});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "results agree"));
  CHECK(contains(r.out, "Where it wins: 600x600 int64"));
  CHECK(names_in(tmp.path()).empty());  // its folder removed
  const test::RunResult help = test::run({test::cli_path(), "demo", "--help"});
  CHECK(contains(help.out, "(default: one per core)"));
  CHECK(!contains(help.out, "=auto"));
  if (contains(r.out, "(skipped: ")) SKIP_CASE("the demo found no /usr/bin/python3 with numpy");
  CHECK(contains(r.out, "results identical, bit for bit"));
}

TEST_CASE("one-thread workers compute alone: no OpenBLAS thread spins beside them") {
  // While a worker computes, the coordinator holds one thread (its OpenBLAS pool stopped: by
  // OpenBLAS before a fork, by shmgemm before waiting on spawned workers), and so does each
  // one-thread worker (none restarts the pool).
  test::TempDir tmp;
  for (const char* name : {"A.npy", "B.npy"})
    REQUIRE(
        test::run({test::cli_path(), "gen", "--shape", "1500x1500", "-o", (tmp / name).string()})
            .status == 0);
  auto tasks_of = [](pid_t pid) { return static_cast<int>(test::threads_of(pid).size()); };
  for (const std::string launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    const std::string cli = test::cli_path(), a = (tmp / "A.npy").string(),
                      c = (tmp / "C.npy").string();
    std::vector<std::string> args = {cli,         "multiply", a,           a,   "-o",       c,
                                     "--workers", "2",        "--threads", "1", "--launch", launch};
    std::vector<char*> argv;
    for (std::string& s : args)
      argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    REQUIRE(::posix_spawn(&pid, cli.c_str(), nullptr, nullptr, argv.data(), environ) == 0);
    int samples = 0, coordinator_most = 0, worker_most = 0, status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      std::ifstream children(fmt::format("/proc/{0}/task/{0}/children", pid));
      std::vector<pid_t> workers;
      for (pid_t w; children >> w;)
        workers.push_back(w);
      const int coordinator = tasks_of(pid);
      for (pid_t w : workers)
        if (const int n = tasks_of(w); n > 0) {
          ++samples;
          worker_most = std::max(worker_most, n);
          coordinator_most = std::max(coordinator_most, coordinator);
        }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    REQUIRE(samples > 0);  // the workers were seen computing
    CHECK(worker_most == 1);
    CHECK(coordinator_most == 1);
  }
}

TEST_CASE(
    "outputs in a shared sticky folder: another user's link is not followed, another "
    "user's file is refused before any work") {
  namespace fs = std::filesystem;
  if (::geteuid() != 0 || !fs::exists("/usr/bin/setpriv")) {
    SKIP_CASE("needs root and setpriv, to act as two users");
  }
  Fixture f;
  // A folder like /tmp (1777), reachable by nobody (uid 65534).
  ::chmod(f.tmp.path().c_str(), 0755);
  for (const char* name : {"A.npy", "B.npy"})
    ::chmod((f.tmp / name).c_str(), 0644);
  const fs::path shared = f.tmp / "shared";
  fs::create_directory(shared);
  REQUIRE(::chmod(shared.c_str(), 01777) == 0);
  const std::vector<std::string> as_nobody = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                              "--clear-groups"};
  auto run_as = [&](bool nobody, const std::vector<std::string>& args) {
    std::vector<std::string> argv = nobody ? as_nobody : std::vector<std::string>{};
    argv.push_back(test::cli_path());
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run(argv);
  };

  // 1. A link that nobody planted there, aimed at a file only root may write: root's output
  // does not follow it, and the file is untouched.
  const fs::path secret = f.tmp / "root-only.npy";
  test::write_file(secret, "root's");
  ::chmod(secret.c_str(), 0600);
  const fs::path link = shared / "out.npy";
  REQUIRE(run_as(true, {"gen", "--shape", "2", "-o", (shared / "scratch.npy").string()}).status ==
          0);
  REQUIRE(test::run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                     "/bin/ln", "-s", secret.string(), link.string()})
              .status == 0);
  const auto before = names_in(shared);
  const test::RunResult r1 = run_as(false, {"multiply", f.p("A.npy"), f.p("B.npy"), "-o", link});
  CAPTURE(r1.err);
  CHECK(r1.status == 1);
  CHECK(count_lines(r1.err) == 1);
  CHECK(contains(r1.err, "a symbolic link of another user (uid 65534)"));
  CHECK(test::read_file(secret) == "root's");
  CHECK(names_in(shared) == before);
  // Root's own link there is followed.
  fs::remove(link);
  fs::create_symlink(secret, link);
  CHECK(run_as(false, {"multiply", f.p("A.npy"), f.p("B.npy"), "-o", link}).status == 0);
  CHECK(test::read_file(secret) != "root's");
  fs::remove(link);

  // 2. Nobody writing over root's file there, which the file's mode would let it write: the
  // rename at the end would fail, so the run is refused before any work, in a moment.
  const fs::path roots = shared / "roots.npy";
  test::write_file(roots, "root's result");
  ::chmod(roots.c_str(), 0666);
  const auto t0 = std::chrono::steady_clock::now();
  const test::RunResult r2 =
      run_as(true, {"multiply", f.p("A.npy"), f.p("B.npy"), "-o", roots.string()});
  CAPTURE(r2.err);
  CHECK(r2.status == 1);
  CHECK(count_lines(r2.err) == 1);
  CHECK(contains(r2.err, "cannot replace it: the folder"));
  CHECK(contains(r2.err, "is sticky and the file belongs to another user (uid 0)"));
  CHECK(test::read_file(roots) == "root's result");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // Root replaces it (CAP_FOWNER), and so does nobody a file of its own there.
  CHECK(run_as(false, {"multiply", f.p("A.npy"), f.p("B.npy"), "-o", roots.string()}).status == 0);
  CHECK(run_as(true,
               {"multiply", f.p("A.npy"), f.p("B.npy"), "-o", (shared / "scratch.npy").string()})
            .status == 0);
}
