// Larger than memory: a product whose A (~3 GiB) does not fit in the 1 GiB memory cgroup it runs
// in. Root only (it makes a cgroup); skipped, with a message, elsewhere. Reproduce by hand:
//   mkdir /sys/fs/cgroup/memory/g && echo 1G > /sys/fs/cgroup/memory/g/memory.limit_in_bytes
//   sh -c 'echo $$ > /sys/fs/cgroup/memory/g/cgroup.procs && exec shmgemm multiply A B -o C'
// (cgroup v2: memory.max instead of memory.limit_in_bytes).
#include <doctest/doctest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/npy_file.hpp"
#include "tests/test_support.hpp"

using namespace shmgemm;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kM = 49152, kK = 8192, kN = 1024;  // A: 3 GiB, B: 64 MiB, C: 384 MiB
constexpr std::uint64_t kLimit = std::uint64_t{1} << 30;

// A memory cgroup limited to kLimit, removed when done: v1 where mounted, else v2.
struct MemoryCgroup {
  fs::path dir;
  std::string limit_file;
  MemoryCgroup() {
    const std::string name = fmt::format("shmgemm-test-{}", ::getpid());
    for (const auto& [root, file] :
         {std::pair<std::string, std::string>{"/sys/fs/cgroup/memory", "memory.limit_in_bytes"},
          {"/sys/fs/cgroup", "memory.max"},
          {"/sys/fs/cgroup/unified", "memory.max"}}) {
      std::error_code ec;
      if (!fs::exists(fs::path(root) / "cgroup.procs") ||
          !fs::create_directory(root + "/" + name, ec))
        continue;
      std::ofstream(fs::path(root) / name / file) << kLimit;
      std::uint64_t read = 0;
      if ((std::ifstream(fs::path(root) / name / file) >> read) && read == kLimit) {
        dir = fs::path(root) / name;
        limit_file = file;
        return;
      }
      fs::remove(fs::path(root) / name, ec);
    }
  }
  ~MemoryCgroup() {
    std::error_code ec;
    if (!dir.empty()) fs::remove(dir, ec);
  }
};

}  // namespace

TEST_CASE("a product larger than the memory it may use completes, streaming, and is right") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to create a memory cgroup");
    return;
  }
  MemoryCgroup cgroup;
  if (cgroup.dir.empty()) {
    MESSAGE("skipped: no memory cgroup controller can be limited here");
    return;
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

  // In the cgroup, with no --rows-per-step: the engine sees that A, B and C (3.4 GiB) exceed the
  // cgroup's 1 GiB and streams by itself.
  const std::string script =
      fmt::format("echo $$ > {}/cgroup.procs && exec {} multiply {} {} -o {} --workers 2 --json",
                  cgroup.dir.string(), test::cli_path(), a, b, c);
  const test::RunResult r = test::run({"/bin/sh", "-c", script});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const auto report = nlohmann::json::parse(r.out);
  CHECK(report["rows_per_step"].get<std::uint64_t>() > 0);
  std::uint64_t peak = 0;
  if (std::ifstream f(cgroup.dir / "memory.max_usage_in_bytes"); f >> peak)
    MESSAGE(fmt::format("cgroup peak usage {:.0f} MiB of {:.0f} MiB; {:.1f} s", peak / 1048576.0,
                        kLimit / 1048576.0, report["seconds"].get<double>()));

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
