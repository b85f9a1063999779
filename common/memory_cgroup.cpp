#include "common/memory_cgroup.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>
#include <utility>

namespace shmgemm {
namespace fs = std::filesystem;

MemoryCgroup::MemoryCgroup(const std::string& name, std::uint64_t limit) {
  for (const auto& [root, file] :
       {std::pair<std::string, std::string>{"/sys/fs/cgroup/memory", "memory.limit_in_bytes"},
        {"/sys/fs/cgroup", "memory.max"},
        {"/sys/fs/cgroup/unified", "memory.max"}}) {
    std::error_code ec;
    if (!fs::exists(fs::path(root) / "cgroup.procs") ||
        !fs::create_directory(fs::path(root) / name, ec))
      continue;
    std::ofstream(fs::path(root) / name / file) << limit;
    std::uint64_t read = 0;
    if ((std::ifstream(fs::path(root) / name / file) >> read) && read == limit) {
      dir_ = fs::path(root) / name;
      v1_ = file == "memory.limit_in_bytes";
      return;
    }
    fs::remove(fs::path(root) / name, ec);
  }
}

MemoryCgroup::~MemoryCgroup() {
  if (dir_.empty()) return;
  // A group is removed once its last process is gone, which may take a moment after it exits.
  for (int i = 0; i < 100; ++i) {
    if (::rmdir(dir_.c_str()) == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string MemoryCgroup::enter_script() const {
  return "echo $$ > " + (dir_ / "cgroup.procs").string() + " && exec \"$@\"";
}

std::uint64_t MemoryCgroup::peak() const {
  std::uint64_t bytes = 0;
  std::ifstream(dir_ / (v1_ ? "memory.max_usage_in_bytes" : "memory.peak")) >> bytes;
  return bytes;
}

std::uint64_t MemoryCgroup::failures() const {
  std::uint64_t count = 0;
  if (v1_) {
    std::ifstream(dir_ / "memory.failcnt") >> count;
    return count;
  }
  std::ifstream events(dir_ / "memory.events");
  for (std::string key; events >> key >> count;)
    if (key == "max") return count;
  return 0;
}

}  // namespace shmgemm
