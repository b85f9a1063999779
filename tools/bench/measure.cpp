#include "tools/bench/measure.hpp"

#include "common/clock.hpp"
#include "common/fd.hpp"
#include "common/mapping.hpp"
#include "engine/interrupt.hpp"
#include "engine/launcher.hpp"
#include "engine/tooling.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shmgemm/error.hpp"

namespace shmgemm::cli {
namespace {

// A process's children now, from every one of its threads' /proc children list.
void append_children(pid_t pid, std::vector<pid_t>& out) {
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream f(task.path() / "children");
    for (pid_t child; f >> child;)
      out.push_back(child);
  }
}

std::vector<pid_t> own_children() {
  std::vector<pid_t> children;
  append_children(::getpid(), children);
  return children;
}

// What a measured program left running (a peer's helper processes, say): this process is their
// subreaper, so they are its children once the program has ended. Each is waited for, up to two
// seconds in all, so that it does not run beside the next measured program.
void wait_for_orphans(const std::vector<pid_t>& before) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    bool left = false;
    for (pid_t child : own_children()) {
      if (std::find(before.begin(), before.end(), child) != before.end()) continue;
      if (::waitpid(child, nullptr, WNOHANG) == 0) left = true;
    }
    if (!left || std::chrono::steady_clock::now() > deadline) return;
    ::usleep(2000);
  }
}

}  // namespace

bool read_memory(pid_t pid, ProcessMemory& out) {
  std::ifstream f(fmt::format("/proc/{}/smaps_rollup", pid));
  if (!f) return false;
  out = {};
  bool any = false;
  // After a header line (the address range), lines like "Pss:   1234 kB".
  for (std::string line; std::getline(f, line);) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kib = 0;
    if (!(fields >> key >> kib)) continue;
    any = true;
    if (key == "Rss:") out.rss = kib * 1024;
    if (key == "Pss:") out.pss = kib * 1024;
    if (key == "Private_Clean:" || key == "Private_Dirty:") out.uss += kib * 1024;
  }
  return any;
}

std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> all{root};
  for (std::size_t i = 0; i < all.size(); ++i)
    append_children(all[i], all);
  return all;
}

Measured run_measured(const std::vector<std::string>& argv, double interval_ms,
                      const std::vector<std::pair<std::string, std::string>>& env) {
  const Fd out_fd = memory_file("shmgemm-stdout", 0, "a file for the program's output");
  const Fd err_fd = memory_file("shmgemm-stderr", 0, "a file for the program's errors");
  detail::Command command{argv[0], {argv.begin() + 1, argv.end()}, env};
  command.stdout_fd = out_fd.get();
  command.stderr_fd = err_fd.get();
  // The measured program's orphans become this process's children, to be waited for.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const std::vector<pid_t> before = own_children();
  Measured m;
  const auto start = std::chrono::steady_clock::now();
  detail::Process process = detail::Process::spawn(command, argv[0]);
  auto sample = [&] {
    std::uint64_t pss = 0;
    const std::vector<pid_t> tree = process_tree(process.pid());
    for (pid_t p : tree) {
      ProcessMemory mem;
      if (!read_memory(p, mem)) continue;
      pss += mem.pss;
      if (p != process.pid())
        m.peak_child_uss = std::max(m.peak_child_uss, mem.uss);
      else
        m.peak_root_uss = std::max(m.peak_root_uss, mem.uss);
    }
    m.peak_pss = std::max(m.peak_pss, pss);
    m.peak_processes = std::max(m.peak_processes, tree.size());
  };
  // An interrupt of this process stops the program the way a user would stop it (the same
  // signal), and waits for it.
  const detail::StopScope interrupts;
  const int tick = interval_ms > 0 ? std::clamp(static_cast<int>(interval_ms), 1, 200) : 200;
  m.status = process.join(tick, interval_ms > 0 ? std::function<void()>(sample) : nullptr, true);
  m.wall_seconds = seconds_since(start);
  m.out = file_contents(out_fd);
  m.err = file_contents(err_fd);
  wait_for_orphans(before);
  return m;
}

double reported_number(const Measured& m, const char* key, const std::string& what) {
  try {
    return nlohmann::json::parse(m.out).at(key).get<double>();
  } catch (const std::exception&) {
    throw Error(ErrorCode::internal,
                fmt::format("bench: {} printed no {}: {}{}", what, key, m.out, m.err));
  }
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    const std::size_t colon = rest.find(':');
    const std::filesystem::path dir(std::string(rest.substr(0, colon)));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    const std::filesystem::path candidate = (dir.empty() ? "." : dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

std::vector<std::string> mpirun_command(unsigned ranks, const std::string& hostfile,
                                        std::string_view who, bool quiet) {
  const char* from_env = std::getenv("SHMGEMM_MPIRUN");
  const std::string mpirun = from_env != nullptr ? from_env : find_on_path("mpirun");
  if (mpirun.empty())
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: mpirun not found on PATH (install Open MPI: "
                            "tools/install-deps.sh, or apt-get install openmpi-bin; or set "
                            "SHMGEMM_MPIRUN)",
                            who));
  std::vector<std::string> argv = {mpirun};
  if (quiet) argv.push_back("-q");
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  if (!hostfile.empty()) {
    argv.insert(argv.end(), {"--hostfile", hostfile});
  } else {
    // One machine: shared memory between ranks, without probing for a network (UCX's start-up
    // alone costs ~0.2 s of every run here: 0.34 s against 0.14 s for a 64^2 product).
    argv.insert(argv.end(), {"--mca", "btl", "self,vader", "--mca", "pml", "ob1"});
    if (ranks > available_cores()) argv.push_back("--oversubscribe");
  }
  argv.insert(argv.end(), {"-n", std::to_string(ranks)});
  return argv;
}

// The peer scripts: --peers-dir, else beside an installed program (PREFIX/share/shmgemm/peers),
// else the source tree this program was built from.
std::filesystem::path peers_folder(const std::string& given) {
  namespace fs = std::filesystem;
  if (!given.empty()) return given;
  const fs::path installed =
      fs::path(self_executable()).parent_path().parent_path() / "share" / "shmgemm" / "peers";
  if (fs::exists(installed / "numpy_matmul.py")) return installed;
  return SHMGEMM_PEERS_DIR;
}

std::string self_executable() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

std::vector<std::string> engine_args(const FileOptions& o) {
  std::vector<std::string> args;
  if (o.in_process) {
    args.push_back("--in-process");
  } else {
    args.insert(args.end(),
                {"--workers", o.workers ? std::to_string(o.workers) : "auto", "--launch",
                 std::string(to_string(o.launch)), "--backing", std::string(to_string(o.backing))});
  }
  if (o.threads) args.insert(args.end(), {"--threads", std::to_string(o.threads)});
  return args;
}

}  // namespace shmgemm::cli
