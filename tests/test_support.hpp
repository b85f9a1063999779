// Helpers shared by the tests: temporary folders, .npy files of any version and order, naive
// reference products, running executables, and a look at /dev/shm.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.hpp"

namespace shmgemm::test {

// Cases that cannot run under AddressSanitizer carry `* doctest::skip(test::kSanitized)`: doctest
// counts them as skipped.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Exit status of a test program some of whose cases were skipped (ctest: SKIP_RETURN_CODE).
inline constexpr int kSkipExitCode = 77;

// A case that cannot run on this machine (not root, a tool missing): records `why`, which the
// test program prints at the end, exiting kSkipExitCode if nothing failed. Where everything must
// run (SHMGEMM_REQUIRE_ALL=1, as CI sets it), the skip fails the case instead. Use SKIP_CASE.
void skip(const std::string& why);
// A test program's exit status from doctest's: kSkipExitCode, after listing the reasons, when
// nothing failed and some case skipped.
int finish(int doctest_status);
// A whole test program that cannot run here: says why and returns kSkipExitCode (1 where
// everything must run).
int skip_program(const std::string& program, const std::string& why);

namespace fs = std::filesystem;

// A fresh folder under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// A dense matrix held as doubles, row-major, whatever dtype it is written as.
struct Dense {
  std::uint64_t rows = 0, cols = 0;
  std::vector<double> v;
  double at(std::uint64_t i, std::uint64_t j) const { return v[i * cols + j]; }
};

Dense random_dense(std::uint64_t rows, std::uint64_t cols, std::mt19937_64& rng);

// The bytes of a .npy file holding `m` as `dtype`, in C or Fortran order, with format version
// `major`.0 (1, 2 or 3), written the way numpy writes them. Dtypes: float64, float32, int64
// (whole values).
std::string npy_bytes(const Dense& m, DType dtype, bool fortran_order = false, int major = 1);
void write_file(const fs::path& path, const std::string& bytes);
std::string read_file(const fs::path& path);
// The file's bytes, or nothing when it cannot be read (a process that has gone).
std::string read_file_if_any(const fs::path& path);

// A view's elements as doubles, row-major.
template <class View>
Dense dense(View v) {
  Dense d{v.rows(), v.cols(), std::vector<double>(v.rows() * v.cols())};
  for (std::size_t i = 0; i < v.rows(); ++i)
    for (std::size_t j = 0; j < v.cols(); ++j)
      d.v[i * v.cols() + j] = double(v(i, j));
  return d;
}

// Reads a 2-D C-order .npy of either float dtype into doubles (through shmgemm's reader).
Dense read_npy(const fs::path& path);

// The naive triple loop, in double.
Dense reference_product(const Dense& a, const Dense& b);

// Largest |x - y| / (1 + |y|) over all elements; infinity when the shapes differ.
double max_rel_diff(const Dense& x, const Dense& y);

// A tolerance for a product of depth k in dtype: a few ulps per term.
double tolerance(DType dtype, std::uint64_t k);

// Names in /dev/shm made by coordinator `pid` ("shmgemm-<pid>-...").
std::vector<std::string> segments_of(pid_t pid);

struct RunResult {
  int status = -1;  // exit status, or 128 + signal
  pid_t pid = 0;
  std::string out, err;
  // The kernel's peak resident set of the process and every descendant it waited for (its
  // workers): the largest of them, in KiB (wait4's ru_maxrss).
  long max_rss_kib = 0;
};

// A process started with stdout and stderr captured; extra environment `env` ("K=V").
class Process {
 public:
  explicit Process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
  pid_t pid() const { return pid_; }
  RunResult wait();

 private:
  TempDir tmp_;
  pid_t pid_ = 0;
};

// Runs `argv` (argv[0] a path) to its end.
RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// Whether process `pid` has a handler for `sig` now (its SigCgt): a program that handles its
// interrupts is ready to be interrupted.
bool handles(pid_t pid, int sig);

// Whether commands may run in a PID namespace of their own here (root, and unshare works).
bool can_isolate();

// Runs `/bin/sh -c script` in a PID namespace of its own (and a private mount namespace when
// `mounts`), so that a bug that signals every process reaches only the script's. Check
// can_isolate() first.
RunResult run_isolated(const std::string& script, bool mounts = false,
                       const std::vector<std::string>& env = {});

// The folders of `pid`'s threads, /proc/PID/task/TID (none once it has gone).
std::vector<fs::path> threads_of(pid_t pid);

// The children of `pid` (from /proc/PID/task/*/children).
std::vector<pid_t> children_of(pid_t pid);

// Whether some thread of `pid` is blocked in pause(2): where the test fault "stall" waits.
// Where that cannot be read (no pause system call, as off x86-64, or /proc/PID/task/*/syscall
// not readable here), true after a wait of 50 ms.
bool paused(pid_t pid);

// True when `pid` has exited (gone, or a zombie).
bool has_exited(pid_t pid);

// Polls `done` every millisecond for up to `seconds`; returns whether it became true.
bool eventually(const std::function<bool()>& done, double seconds);

// Whether `s` contains `part`.
bool contains(const std::string& s, const std::string& part);

// Newlines in `s`.
std::size_t count_lines(const std::string& s);

// The names in a folder, sorted.
std::vector<std::string> names_in(const fs::path& dir);

// Every name that appeared in `dir` while `f` ran, however briefly (inotify's IN_CREATE and
// IN_MOVED_TO), in order.
std::vector<std::string> names_created_in(const fs::path& dir, const std::function<void()>& f);

// "LD_PRELOAD=<the test fault library>", for the programs a test starts with SHMGEMM_TEST_FAULT.
std::string fault_preload();

// Writes random float64 operands with `shmgemm gen`: dir/A.npy of `shape_a` (seed 0) and
// dir/B.npy of `shape_b` (seed 1), "3000x3000" and the like. Throws when gen fails.
void gen_operands(const fs::path& dir, const std::string& shape_a, const std::string& shape_b);

// Paths of the built executables.
std::string cli_path();
std::string worker_path();

}  // namespace shmgemm::test

// Skips the rest of the current test case (test::skip), returning from it.
#define SKIP_CASE(why)          \
  do {                          \
    ::shmgemm::test::skip(why); \
    return;                     \
  } while (false)
