#include "common/segment.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <sys/stat.h>

#include <sys/mman.h>
#include <atomic>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "common/mapped_file.hpp"
#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;

namespace shmgemm {
namespace {

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v))
    throw Error(ErrorCode::resource,
                fmt::format("cannot draw a random segment name: {}", std::strerror(errno)));
  return v;
}

std::uint64_t shm_free_bytes() {
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

[[noreturn]] void throw_segment_error(const std::string& name, std::string_view action,
                                      const bip::interprocess_exception& e) {
  const int err = e.get_native_error();
  throw Error(ErrorCode::resource, fmt::format("cannot {} shared segment /dev/shm/{}: {}", action,
                                               name, err ? std::strerror(err) : e.what()));
}

// When process `pid` started, in seconds since the epoch, or nothing if it does not run.
std::optional<double> process_start_time(pid_t pid) {
  std::ifstream stat_file(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat_file, line)) return std::nullopt;
  // Field 22 (starttime, clock ticks since boot) counts from after the ")" ending field 2;
  // field 3 is the state: a zombie (Z, X) has ended, whatever its parent has not yet done.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return std::nullopt;
  if (line[close + 2] == 'Z' || line[close + 2] == 'X') return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long long ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) ticks = std::stoull(field);
  std::ifstream proc_stat("/proc/stat");
  double boot = 0;
  for (std::string key; proc_stat >> key;)
    if (key == "btime") {
      proc_stat >> boot;
      break;
    }
  return boot + static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

std::uint64_t pid_namespace() {
  static const std::uint64_t ns = [] {
    struct stat st {};
    return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
  }();
  return ns;
}

std::string maker_tag(pid_t pid) {
  return fmt::format("{}-p{}", pid, pid_namespace());
}

std::size_t parse_maker_tag(std::string_view text, pid_t& pid, std::uint64_t& ns) {
  const char* end = text.data() + text.size();
  const auto [pid_end, e1] = std::from_chars(text.data(), end, pid);
  if (e1 != std::errc() || end - pid_end < 3 || pid_end[0] != '-' || pid_end[1] != 'p') return 0;
  const auto [ns_end, e2] = std::from_chars(pid_end + 2, end, ns);
  if (e2 != std::errc() || ns_end == end || *ns_end != '-') return 0;
  return static_cast<std::size_t>(ns_end + 1 - text.data());
}

double changed_at(const struct stat& st) {
  return static_cast<double>(st.st_ctim.tv_sec) + static_cast<double>(st.st_ctim.tv_nsec) * 1e-9;
}

const char* why_kept(uid_t owner, pid_t pid, std::uint64_t ns, double made) {
  if (owner != ::geteuid()) return "owned by another user";
  if (ns != 0 && ns != pid_namespace()) return "made in another PID namespace";
  if (process_alive_since(pid, made)) return "its coordinator is running";
  return nullptr;
}

std::string segment_name_prefix(pid_t pid) {
  return fmt::format("{}{}-", kSegmentPrefix, maker_tag(pid));
}

bool process_alive_since(pid_t pid, double made) {
  const auto started = process_start_time(pid);
  return started && *started <= made + 1.0;
}

std::uint64_t memory_available(bool* limited_by_cgroup) {
  std::uint64_t available = UINT64_MAX;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    std::uint64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") available = kib * 1024;
    meminfo.ignore(64, '\n');
  }
  std::uint64_t in_cgroup = UINT64_MAX;
  // The memory cgroup's limit: "N:memory:/path" (v1) or "0::/path" (v2) in /proc/self/cgroup.
  std::ifstream cgroups("/proc/self/cgroup");
  for (std::string line; std::getline(cgroups, line);) {
    const std::size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    std::vector<std::pair<std::string, std::string>> files;  // limit, usage
    if (controllers == "memory")
      files = {{"/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory" + path + "/memory.usage_in_bytes"}};
    else if (controllers.empty())
      files = {
          {"/sys/fs/cgroup" + path + "/memory.max", "/sys/fs/cgroup" + path + "/memory.current"},
          {"/sys/fs/cgroup/unified" + path + "/memory.max",
           "/sys/fs/cgroup/unified" + path + "/memory.current"}};
    for (const auto& [limit_file, usage_file] : files) {
      std::ifstream f(limit_file), u(usage_file);
      std::uint64_t limit = 0, usage = 0;
      if (!(f >> limit)) continue;  // "max" reads as no number
      if (!(u >> usage)) usage = 0;
      in_cgroup = std::min(in_cgroup, limit > usage ? limit - usage : 0);
    }
  }
  if (limited_by_cgroup) *limited_by_cgroup = in_cgroup < available;
  return std::min(available, in_cgroup);
}

void check_shm_room(std::uint64_t bytes, std::string_view purpose) {
  const std::uint64_t free = shm_free_bytes();
  if (bytes > free)
    throw Error(ErrorCode::resource,
                fmt::format("not enough room in /dev/shm for {}: {} bytes needed, {} free", purpose,
                            bytes, free));
  // Shared memory is charged to the memory cgroup: past its limit the kernel kills, it does not
  // fail an allocation.
  bool cgroup = false;
  const std::uint64_t memory = memory_available(&cgroup);
  if (cgroup && bytes > memory)
    throw Error(ErrorCode::resource,
                fmt::format("not enough memory for {} in shared memory: {} bytes needed, {} left "
                            "under this process's memory cgroup limit",
                            purpose, bytes, memory));
}

std::vector<SegmentEntry> list_segments() {
  std::vector<SegmentEntry> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kSegmentPrefix, 0) != 0) continue;
    const std::string_view tag = std::string_view(name).substr(kSegmentPrefix.size());
    SegmentEntry e;
    e.name = name;
    // "<pid>-p<namespace>-", or "<pid>-" in names made before PID namespaces were recorded.
    if (parse_maker_tag(tag, e.coordinator, e.namespace_) == 0) {
      const auto [end, err] = std::from_chars(tag.data(), tag.data() + tag.size(), e.coordinator);
      if (err != std::errc() || end == tag.data() + tag.size() || *end != '-') continue;
    }
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    e.bytes = static_cast<std::uint64_t>(st.st_size);
    e.owner = st.st_uid;
    e.made = changed_at(st);
    found.push_back(e);
  }
  return found;
}

std::string make_segment_name(std::string_view role) {
  static std::atomic<std::uint64_t> counter{0};
  return fmt::format("{}{}-{}-{:016x}", segment_name_prefix(::getpid()), counter++, role,
                     random_u64());
}

Fd create_unnamed_shm(std::string_view role) {
  Fd fd(::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  int err = errno;
  if (!fd && (err == EOPNOTSUPP || err == EISDIR || err == EINVAL)) {
    // No O_TMPFILE here (EISDIR: a kernel older than 3.11 takes it for O_DIRECTORY). O_EXCL and
    // 0600: a leftover or foreign name fails loudly; the name lives until the shm_unlink below.
    const std::string path = fmt::format("/{}", make_segment_name(role));
    fd.reset(::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
    err = errno;
    if (fd) ::shm_unlink(path.c_str());
  }
  if (!fd)
    throw Error(ErrorCode::resource, fmt::format("cannot create the {} segment in /dev/shm: {}",
                                                 role, std::strerror(err)));
  // The mode as asked, whatever the umask: spawned workers open it again by /proc path, which
  // checks the file's permissions.
  ::fchmod(fd.get(), 0600);
  return fd;
}

SharedSegment SharedSegment::create(std::string_view role, std::size_t bytes) {
  SharedSegment seg;
  seg.fd_ = create_unnamed_shm(role);
  seg.name_ = seg.fd_.path_for_others();
  // Reserve the pages now: a full tmpfs is an error here, not a SIGBUS at first touch.
  if (const int err = ::posix_fallocate(seg.fd_.get(), 0, static_cast<off_t>(bytes)); err != 0)
    throw Error(ErrorCode::resource,
                fmt::format("cannot reserve {} bytes of shared memory for the {} segment: {} ({} "
                            "bytes free in /dev/shm)",
                            bytes, role, std::strerror(err), shm_free_bytes()));
  try {
    seg.region_ = map_whole_file(seg.fd_.path_here(), true);
  } catch (const MapError& e) {
    // Mapped through /proc/self/fd/N, which names nothing the user knows.
    throw Error(ErrorCode::resource,
                fmt::format("cannot map {} bytes of shared memory for the {} segment: {}", bytes,
                            role, e.reason()));
  }
  return seg;
}

SharedSegment SharedSegment::attach(const std::string& name, bool writable) {
  SharedSegment seg;
  seg.name_ = name;
  if (name.rfind("/proc/", 0) == 0) {
    // A segment handed over by descriptor: /proc/<pid>/fd/<fd> of the process that made it.
    try {
      seg.region_ = map_whole_file(name, writable);
    } catch (const MapError& e) {
      throw Error(
          ErrorCode::resource,
          fmt::format("cannot attach to shared segment {}: cannot map: {}", name, e.reason()));
    }
    return seg;
  }
  const bip::mode_t mode = writable ? bip::read_write : bip::read_only;
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), mode);
    seg.region_ = bip::mapped_region(shm, mode);
  } catch (const bip::interprocess_exception& e) {
    throw_segment_error(name, "attach to", e);
  }
  return seg;
}

}  // namespace shmgemm
