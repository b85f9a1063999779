// Larger than memory: a product whose A (1.5 GiB) does not fit in the 512 MiB memory cgroup it
// runs in. Root only (it makes a cgroup); skipped, with a message, elsewhere. Reproduce by hand:
//   mkdir /sys/fs/cgroup/memory/g && echo 512M > /sys/fs/cgroup/memory/g/memory.limit_in_bytes
//   sh -c 'echo $$ > /sys/fs/cgroup/memory/g/cgroup.procs && exec shmgemm multiply A B -o C'
// (cgroup v2: memory.max instead of memory.limit_in_bytes).
#include <doctest/doctest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/memory_cgroup.hpp"
#include "common/npy_file.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kM = 24576, kK = 8192, kN = 1024;  // A: 1.5 GiB, B: 64 MiB, C: 192 MiB
constexpr std::uint64_t kLimit = std::uint64_t{512} << 20;

}  // namespace

// Its time is OpenBLAS's and the disk's: the sanitizers' build streams in the next case.
TEST_CASE("a product larger than the memory it may use completes, streaming, and is right" *
          doctest::skip(test::kSanitized)) {
  if (::geteuid() != 0) {
    SKIP_CASE("needs root to create a memory cgroup");
  }
  MemoryCgroup cgroup(fmt::format("shmgemm-test-{}", ::getpid()), kLimit);
  if (!cgroup.valid()) {
    SKIP_CASE("no memory cgroup controller can be limited here");
  }
  // On disk, beside the build: a file in /tmp could be tmpfs, which is memory itself.
  const fs::path dir = fs::current_path() / fmt::format("larger-than-memory-{}", ::getpid());
  fs::create_directories(dir);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  const std::string a = (dir / "A.npy").string(), b = (dir / "B.npy").string(),
                    c = (dir / "C.npy").string();
  REQUIRE(test::run({test::cli_path(), "gen", "--shape", fmt::format("{}x{}", kM, kK), "--seed",
                     "1", "-o", a})
              .status == 0);
  REQUIRE(test::run({test::cli_path(), "gen", "--shape", fmt::format("{}x{}", kK, kN), "--seed",
                     "2", "-o", b})
              .status == 0);

  // In the cgroup, with no --rows-per-step: the engine sees that A, B and C (1.75 GiB) exceed
  // the cgroup's 512 MiB and streams by itself.
  const std::string script =
      fmt::format("echo $$ > {}/cgroup.procs && exec {} multiply {} {} -o {} --workers 2 --json",
                  cgroup.dir().string(), test::cli_path(), a, b, c);
  const test::RunResult r = test::run({"/bin/sh", "-c", script});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto report = nlohmann::json::parse(r.out);
  CHECK(report["rows_per_step"].get<std::uint64_t>() > 0);
  MESSAGE(fmt::format("cgroup peak usage {:.0f} MiB of {:.0f} MiB; {:.1f} s",
                      cgroup.peak() / 1048576.0, kLimit / 1048576.0,
                      report["seconds"].get<double>()));

  // The reference, a block at a time: sum(C) = colsum(A) . rowsum(B), and 8 whole rows of C.
  const NpyMapping am = NpyMapping::open(a), bm = NpyMapping::open(b), cm = NpyMapping::open(c);
  const auto* A = reinterpret_cast<const double*>(am.data());
  const auto* B = reinterpret_cast<const double*>(bm.data());
  const auto* C = reinterpret_cast<const double*>(cm.data());
  std::vector<double> colsum_a(kK, 0.0), rowsum_b(kK, 0.0);
  constexpr std::uint64_t kBlock = 1024;
  for (std::uint64_t i0 = 0; i0 < kM; i0 += kBlock) {
    for (std::uint64_t i = i0; i < std::min(kM, i0 + kBlock); ++i)
      for (std::uint64_t p = 0; p < kK; ++p)
        colsum_a[p] += A[i * kK + p];
    am.drop_pages(i0 * kK * 8, kBlock * kK * 8);
  }
  for (std::uint64_t p = 0; p < kK; ++p)
    for (std::uint64_t j = 0; j < kN; ++j)
      rowsum_b[p] += B[p * kN + j];
  double want = 0, got = 0;
  for (std::uint64_t p = 0; p < kK; ++p)
    want += colsum_a[p] * rowsum_b[p];
  for (std::uint64_t i = 0; i < kM * kN; ++i)
    got += C[i];
  CHECK(std::abs(got - want) <= 1e-9 * std::abs(want));
  std::mt19937_64 rng(3);
  for (int t = 0; t < 8; ++t) {
    const std::uint64_t i = rng() % kM;
    double worst = 0;
    for (std::uint64_t j = 0; j < kN; ++j) {
      double dot = 0;
      for (std::uint64_t p = 0; p < kK; ++p)
        dot += A[i * kK + p] * B[p * kN + j];
      worst = std::max(worst, std::abs(dot - C[i * kN + j]) / (1 + std::abs(dot)));
    }
    CAPTURE(i);
    CHECK(worst <= test::tolerance(DType::float64, kK));
  }
  CHECK(test::segments_of(r.pid).empty());
}

TEST_CASE(
    "--rows-per-step reaches the workers: their peak resident memory falls by A's and C's rows") {
  // 3000^2 float64: A, B and C take 72 MB each. A worker of two holds B, and without streaming
  // its half of A and of C; streaming, a step of rows at a time. Under the sanitizers (whose
  // shadow memory counts in the peak) the bytes alone are compared.
  test::TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string(),
                    c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  const double b_mib = 3000.0 * 3000 * 8 / 1048576;
  for (const char* launch : {"fork", "spawn"}) {
    CAPTURE(launch);
    std::vector<std::string> argv = {test::cli_path(), "multiply", a,          b,     "-o", c,
                                     "--workers",      "2",        "--launch", launch};
    const test::RunResult whole = test::run(argv);
    REQUIRE(whole.status == 0);
    // Compared at the end: the workers' figures must not count this process's memory.
    std::filesystem::rename(c, c + ".whole");
    argv.insert(argv.end(), {"--rows-per-step", "128"});
    const test::RunResult streamed = test::run(argv);
    CAPTURE(streamed.err);
    REQUIRE(streamed.status == 0);
    const double whole_mib = whole.max_rss_kib / 1024.0,
                 streamed_mib = streamed.max_rss_kib / 1024.0;
    MESSAGE(
        fmt::format("{}: largest worker {:.0f} MiB whole, {:.0f} MiB with --rows-per-step 128 "
                    "(B alone is {:.0f} MiB)",
                    launch, whole_mib, streamed_mib, b_mib));
    // Whole: B and half of A and C (~137 MiB); streaming: B and a few steps (~69 + ~10 MiB).
    if (!test::kSanitized) {
      CHECK(whole_mib > b_mib + 50);
      CHECK(streamed_mib < b_mib + 30);
    }
    CHECK(test::read_file(c) == test::read_file(c + ".whole"));  // the same bytes either way
  }
}

TEST_CASE("--backing shm under a memory cgroup too small for it: refused before computing") {
  if (::geteuid() != 0) {
    SKIP_CASE("needs root to create a memory cgroup");
  }
  MemoryCgroup cgroup(fmt::format("shmgemm-test-{}", ::getpid()), 150 << 20);
  if (!cgroup.valid()) {
    SKIP_CASE("no memory cgroup controller can be limited here");
  }
  test::TempDir tmp;
  const std::string a = (tmp / "A.npy").string(), b = (tmp / "B.npy").string(),
                    c = (tmp / "C.npy").string();
  test::gen_operands(tmp.path(), "3000x3000", "3000x3000");
  // A, B and C in segments take 216 MB: more than the cgroup's 150 MiB. Without the check the
  // kernel kills the run (exit 137) and the segments stay charged to the cgroup.
  const std::string script = fmt::format(
      "echo $$ > {}/cgroup.procs && exec {} multiply {} {} -o {} --workers 2 "
      "--backing shm",
      cgroup.dir().string(), test::cli_path(), a, b, c);
  const test::RunResult r = test::run({"/bin/sh", "-c", script});
  CAPTURE(r.err);
  CHECK(r.status == 1);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find("not enough memory for A, B, C and the job descriptor in shared memory") !=
        std::string::npos);
  CHECK(!fs::exists(c));
  CHECK(test::segments_of(r.pid).empty());
}
