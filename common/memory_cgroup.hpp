// A memory cgroup of this process's making, for runs that must stay within a limit (tests,
// bench --out-of-core): root only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace shmgemm {

class MemoryCgroup {
 public:
  // A group `name` limited to `limit` bytes: cgroup v1 where its memory controller is mounted,
  // else v2. None (valid() false) where neither can be made and limited (not root, no
  // controller).
  MemoryCgroup(const std::string& name, std::uint64_t limit);
  ~MemoryCgroup();  // removes the group (waiting briefly for its processes to be gone)
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  bool valid() const { return !dir_.empty(); }
  const std::filesystem::path& dir() const { return dir_; }
  // "echo $$ > DIR/cgroup.procs && exec "$@"": `sh -c` this, then the command, to run it inside.
  std::string enter_script() const;
  std::uint64_t peak() const;      // the most it held (v1 max_usage_in_bytes, v2 memory.peak)
  std::uint64_t failures() const;  // how often it reached its limit (v1 failcnt, v2 events max)

 private:
  std::filesystem::path dir_;
  bool v1_ = false;
};

}  // namespace shmgemm
