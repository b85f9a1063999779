#include "tests/test_support.hpp"

#include "common/segment.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "common/npy_file.hpp"

extern char** environ;

namespace shmgemm::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = fmt::format("{}/shmgemm-test-XXXXXX", base && *base ? base : "/tmp");
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Dense random_dense(std::uint64_t rows, std::uint64_t cols, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  Dense d{rows, cols, std::vector<double>(rows * cols)};
  for (double& x : d.v)
    x = dist(rng);
  return d;
}

std::string npy_bytes(const Dense& m, DType dtype, bool fortran_order, int major) {
  const std::string shape = fmt::format("({}, {})", m.rows, m.cols);
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
                                 npy_descr(dtype), fortran_order ? "True" : "False", shape);
  const std::size_t preamble = major == 1 ? 10 : 12;
  const std::size_t unpadded = preamble + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < preamble - 8; ++i)
    out += static_cast<char>((dict.size() >> (8 * i)) & 0xFF);
  out += dict;
  for (std::uint64_t o = 0; o < m.rows * m.cols; ++o) {
    // Element o in storage order.
    const std::uint64_t i = fortran_order ? o % m.rows : o / m.cols;
    const std::uint64_t j = fortran_order ? o / m.rows : o % m.cols;
    if (dtype == DType::float64) {
      const double x = m.at(i, j);
      out.append(reinterpret_cast<const char*>(&x), 8);
    } else if (dtype == DType::int64) {
      const auto x = static_cast<std::int64_t>(m.at(i, j));
      out.append(reinterpret_cast<const char*>(&x), 8);
    } else {
      const float x = static_cast<float>(m.at(i, j));
      out.append(reinterpret_cast<const char*>(&x), 4);
    }
  }
  return out;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file_if_any(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream out;
  if (f) out << f.rdbuf();
  return out.str();
}

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

Dense read_npy(const fs::path& path) {
  const NpyMapping f = NpyMapping::open(path);
  const auto& h = f.header();
  if (h.shape.size() != 2 || h.fortran_order) throw std::runtime_error("not a 2-D C-order array");
  Dense d{h.shape[0], h.shape[1], std::vector<double>(h.element_count)};
  for (std::uint64_t i = 0; i < h.element_count; ++i)
    d.v[i] = h.dtype == DType::float64 ? reinterpret_cast<const double*>(f.data())[i]
                                       : reinterpret_cast<const float*>(f.data())[i];
  return d;
}

Dense reference_product(const Dense& a, const Dense& b) {
  Dense c{a.rows, b.cols, std::vector<double>(a.rows * b.cols, 0.0)};
  for (std::uint64_t i = 0; i < a.rows; ++i)
    for (std::uint64_t p = 0; p < a.cols; ++p)
      for (std::uint64_t j = 0; j < b.cols; ++j)
        c.v[i * c.cols + j] += a.at(i, p) * b.at(p, j);
  return c;
}

double max_rel_diff(const Dense& x, const Dense& y) {
  if (x.rows != y.rows || x.cols != y.cols) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (std::size_t i = 0; i < x.v.size(); ++i) {
    const double d = std::abs(x.v[i] - y.v[i]) / (1.0 + std::abs(y.v[i]));
    if (!(d <= worst)) worst = d;  // NaN sticks
  }
  return worst;
}

double tolerance(DType dtype, std::uint64_t k) {
  const double eps = dtype == DType::float64 ? 0x1.0p-52 : 0x1.0p-23;
  return 4.0 * eps * static_cast<double>(k + 1);
}

std::vector<std::string> segments_of(pid_t pid) {
  std::vector<std::string> found;
  const std::string prefix = segment_name_prefix(pid);
  for (const auto& entry : fs::directory_iterator("/dev/shm")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) found.push_back(name);
  }
  return found;
}

Process::Process(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  const std::string out_path = (tmp_ / "out").string(), err_path = (tmp_ / "err").string();
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // This process's environment, with `env` replacing variables of the same name.
  std::vector<std::string> env_strings(env.begin(), env.end());
  for (char** e = environ; *e; ++e) {
    const std::string_view entry(*e);
    const std::string_view key = entry.substr(0, entry.find('=') + 1);
    if (std::none_of(env.begin(), env.end(),
                     [&](const std::string& x) { return x.rfind(key, 0) == 0; }))
      env_strings.emplace_back(entry);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  // fork, not posix_spawn: glibc's posix_spawn shares this process's memory until the exec,
  // and the kernel then counts this process's peak resident set as the child's (ru_maxrss),
  // which would hide what the child itself used. Only async-signal-safe calls after the fork.
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (out_fd < 0 || err_fd < 0) throw std::runtime_error("cannot capture the output of " + argv[0]);
  // Closed in the child by its exec: the constructor returns once the program runs. Before the
  // exec the child still has this process's signal handlers, so /proc showed SIGTERM caught
  // (test::handles) before the program had even started, and a SIGTERM sent then killed it
  // before it could catch one (test_mpi, "--launch mpi: an interrupt...", under ASan).
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 for " + argv[0]);
  pid_ = ::fork();
  if (pid_ == 0) {
    // As posix_spawn does: the test framework's signal handlers must not run in the child
    // before the exec (a signal sent early would report a crash of the test itself).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
      ::sigaction(sig, &dfl, nullptr);
    if (::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  ::close(exec_pipe[1]);
  if (pid_ > 0) {
    char byte;
    while (::read(exec_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
  }
  ::close(exec_pipe[0]);
  if (pid_ < 0) throw std::runtime_error("cannot start " + argv[0]);
}

RunResult Process::wait() {
  int status = 0;
  struct rusage usage {};
  ::wait4(pid_, &status, 0, &usage);
  RunResult r;
  r.pid = pid_;
  r.max_rss_kib = usage.ru_maxrss;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(tmp_ / "out");
  r.err = read_file(tmp_ / "err");
  return r;
}

RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  return Process(argv, env).wait();
}

bool handles(pid_t pid, int sig) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(f, line);)
    if (line.rfind("SigCgt:", 0) == 0)
      return (std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1;
  return false;
}

namespace {
std::vector<std::string>& skip_list() {
  static std::vector<std::string> reasons;
  return reasons;
}

bool require_all() {
  const char* all = std::getenv("SHMGEMM_REQUIRE_ALL");
  return all != nullptr && std::string_view(all) == "1";
}
}  // namespace

void skip(const std::string& why) {
  if (require_all()) {
    FAIL_CHECK("skipped where every case must run (SHMGEMM_REQUIRE_ALL=1): " << why);
    return;
  }
  MESSAGE("skipped: " << why);
  skip_list().push_back(why);
}

int finish(int doctest_status) {
  const auto& skipped = skip_list();
  if (doctest_status != 0 || skipped.empty()) return doctest_status;
  std::fprintf(stderr, "%zu case(s) skipped on this machine:\n", skipped.size());
  for (const std::string& why : skipped)
    std::fprintf(stderr, "  %s\n", why.c_str());
  return kSkipExitCode;
}

int skip_program(const std::string& program, const std::string& why) {
  std::fprintf(
      stderr, "%s: %s: %s\n", program.c_str(),
      require_all() ? "cannot run where every test must (SHMGEMM_REQUIRE_ALL=1)" : "skipped",
      why.c_str());
  return require_all() ? 1 : kSkipExitCode;
}

bool can_isolate() {
  static const bool ok =
      ::geteuid() == 0 &&
      run({"/usr/bin/unshare", "-p", "-f", "--mount-proc", "-m", "/bin/true"}).status == 0;
  return ok;
}

RunResult run_isolated(const std::string& script, bool mounts,
                       const std::vector<std::string>& env) {
  std::vector<std::string> argv = {"/usr/bin/unshare", "-p", "-f", "--mount-proc", "--kill-child"};
  if (mounts) argv.push_back("-m");
  argv.insert(argv.end(), {"/bin/sh", "-c", script});
  return run(argv, env);
}

std::vector<fs::path> threads_of(pid_t pid) {
  std::vector<fs::path> tasks;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    tasks.push_back(it->path());
  return tasks;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> kids;
  for (const fs::path& task : threads_of(pid)) {
    std::ifstream f(task / "children");
    for (pid_t k; f >> k;)
      kids.push_back(k);
  }
  return kids;
}

bool paused([[maybe_unused]] pid_t pid) {
#ifdef SYS_pause
  bool readable = false;
  for (const fs::path& task : threads_of(pid)) {
    std::ifstream f(task / "syscall");
    std::string first;
    if (!(f >> first)) continue;  // not ours to read (ptrace rules), or gone
    readable = true;
    if (first == std::to_string(SYS_pause)) return true;
  }
  if (readable || has_exited(pid)) return false;
#endif
  ::usleep(50 * 1000);  // cannot tell: give it the time it used to be given
  return true;
}

bool has_exited(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return true;
  const std::size_t close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z' ||
         line[close + 2] == 'X';
}

bool eventually(const std::function<bool()>& done, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    ::usleep(1000);
  }
  return done();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::size_t count_lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> names_created_in(const fs::path& dir, const std::function<void()>& f) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("inotify_init1: {}", std::strerror(errno)));
  if (::inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    ::close(fd);
    throw std::runtime_error(
        fmt::format("inotify_add_watch {}: {}", dir.string(), std::strerror(errno)));
  }
  std::vector<std::string> names;
  try {
    f();
  } catch (...) {
    ::close(fd);
    throw;
  }
  alignas(inotify_event) char buf[1 << 16];
  for (ssize_t got; (got = ::read(fd, buf, sizeof buf)) > 0;)
    for (ssize_t at = 0; at < got;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
      if (e->len > 0) names.emplace_back(e->name);
      at += ssize_t(sizeof(inotify_event) + e->len);
    }
  ::close(fd);
  return names;
}

std::string cli_path() {
  // SHMGEMM_TEST_CLI runs the tests against another build (an older one, to see a new test
  // fail there first).
  const char* other = std::getenv("SHMGEMM_TEST_CLI");
  return other && *other ? other : SHMGEMM_CLI;
}
void gen_operands(const fs::path& dir, const std::string& shape_a, const std::string& shape_b) {
  for (const auto& [name, shape, seed] :
       {std::tuple{"A.npy", shape_a, "0"}, {"B.npy", shape_b, "1"}})
    if (run({cli_path(), "gen", "--shape", shape, "--seed", seed, "-o", (dir / name).string()})
            .status != 0)
      throw std::runtime_error("shmgemm gen --shape " + shape + " failed");
}

std::string fault_preload() {
  return std::string("LD_PRELOAD=") + SHMGEMM_TEST_FAULTS_LIB;
}

std::string worker_path() {
  return SHMGEMM_WORKER_EXE;
}

}  // namespace shmgemm::test
