// Named POSIX shared-memory segments (Boost.Interprocess), as move-only RAII handles.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include "common/fd.hpp"

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shmgemm {

// Every segment name starts with this, then the coordinator's pid and PID namespace:
// "shmgemm-<pid>-p<namespace>-...".
inline constexpr std::string_view kSegmentPrefix = "shmgemm-";

// This process's PID namespace: the inode of /proc/self/ns/pid (0 where it cannot be read).
// Processes that share /dev/shm may live in different PID namespaces (containers with a host
// IPC namespace), where the same pid names different processes.
std::uint64_t pid_namespace();

// "<pid>-p<namespace>": who made something that may outlive its maker (a segment's name, a
// temporary output, a tool's folder), as its name records it: the maker's pid and PID
// namespace (this process's).
std::string maker_tag(pid_t pid);

// Reads a maker tag and the '-' after it at the start of `text`. Returns the characters read,
// 0 when `text` does not start with one.
std::size_t parse_maker_tag(std::string_view text, pid_t& pid, std::uint64_t& ns);

// A file's ctime in seconds since the epoch: when a leftover was made, for why_kept().
double changed_at(const struct stat& st);

// Why a leftover must stay, or nullptr when it may be removed: it belongs to another user than
// this process's, or its maker (`pid` of PID namespace `ns`; 0: not recorded, taken as this
// one) is of another PID namespace, or still runs and started before `made` (a ctime).
const char* why_kept(uid_t owner, pid_t pid, std::uint64_t ns, double made);

// "shmgemm-<pid>-p<namespace>-": how every name made by coordinator `pid` of this process's
// PID namespace starts.
std::string segment_name_prefix(pid_t pid);

// A unique, traceable name: "shmgemm-<pid>-p<namespace>-<counter>-<role>-<16 random hex digits>".
std::string make_segment_name(std::string_view role);

// Bytes of memory this process may still use: MemAvailable, or less under a memory cgroup
// (v1 memory.limit_in_bytes less memory.usage_in_bytes, v2 memory.max less memory.current).
// `limited_by_cgroup`, when given, says whether the cgroup was the smaller.
std::uint64_t memory_available(bool* limited_by_cgroup = nullptr);

// Checks that /dev/shm has `bytes` free, and that the memory cgroup (whose limit the pages of
// shared memory count against) leaves room for them. Throws Error(resource) giving the bytes
// needed and free, and what they are for (`purpose`).
void check_shm_room(std::uint64_t bytes, std::string_view purpose);

// Whether process `pid` runs and started before `made` (seconds since the epoch, as a file's
// ctime): a pid that started later is a reused one, not the maker of what was made.
bool process_alive_since(pid_t pid, double made);

// A segment of ours found in /dev/shm.
struct SegmentEntry {
  std::string name;
  pid_t coordinator = 0;         // from the name
  std::uint64_t namespace_ = 0;  // the coordinator's PID namespace, from the name; 0: not named
  std::uint64_t bytes = 0;
  uid_t owner = 0;
  double made = 0;  // its ctime, seconds since the epoch
};

// Every "shmgemm-<pid>-..." name in /dev/shm (why_kept() says whether one may go).
std::vector<SegmentEntry> list_segments();

// A new, empty file of shared memory that no name ever reaches, mode 0600: an O_TMPFILE file in
// /dev/shm, or, where that filesystem or kernel has no O_TMPFILE, shm_open of a fresh name
// (O_EXCL) unlinked at once (a SIGKILL in between would leave that name, for `shmgemm gc`).
// Other processes open it as /proc/<pid>/fd/<fd>. `role` goes into the fallback's name and the
// error's text. Throws Error(resource).
Fd create_unnamed_shm(std::string_view role);

// A mapped segment of shared memory. One that this process creates is never-named memory
// (create_unnamed_shm): other processes (spawned workers) map it through its descriptor,
// /proc/<pid>/fd/<fd> (name()), for as long as this handle lives. Nothing is left behind by a
// crash, and no name can be swapped under a worker.
// Thread-safety: none; one handle belongs to one thread at a time.
class SharedSegment {
 public:
  SharedSegment() = default;  // empty: maps nothing, names nothing

  // Creates a new segment of `bytes` (> 0), unnamed and of mode 0600, reserves its pages (so a full
  // /dev/shm fails here, not with SIGBUS later) and maps it read-write. Throws Error(resource)
  // naming the role, the bytes needed and the bytes free.
  static SharedSegment create(std::string_view role, std::size_t bytes);

  // Maps an existing segment: a /proc/<pid>/fd/<fd> path as name() gives, or a /dev/shm name.
  static SharedSegment attach(const std::string& name, bool writable);

  SharedSegment(SharedSegment&&) noexcept = default;
  SharedSegment& operator=(SharedSegment&&) noexcept = default;
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;
  ~SharedSegment() = default;

  std::byte* data() const { return static_cast<std::byte*>(region_.get_address()); }
  std::size_t size() const { return region_.get_size(); }
  // How another process maps this segment: /proc/<pid>/fd/<fd> for one created here, valid as
  // long as this handle lives; the name it was attached by otherwise.
  const std::string& name() const { return name_; }
  // The descriptor of a segment created here (-1 for an attached one).
  int fd() const { return fd_.get(); }

 private:
  std::string name_;
  Fd fd_;
  boost::interprocess::mapped_region region_;
};

}  // namespace shmgemm
