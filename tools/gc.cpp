// `shmgemm gc`: removes the segments of coordinators that died before they could.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <boost/interprocess/shared_memory_object.hpp>

#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "tools/commands.hpp"

namespace shmgemm::cli {
namespace {

// "shmgemm-<word>-<pid>-p<ns>-XXXXXX": a tools' temporary folder (tools/temp_dir.cpp).
bool parse_tool_folder(std::string_view name, pid_t& pid, std::uint64_t& ns) {
  if (!name.starts_with("shmgemm-") || name.size() < 8 + 7) return false;
  const std::string_view rest = name.substr(8);
  const std::size_t word = rest.find('-');
  if (word == std::string_view::npos || word == 0) return false;
  const char* p = rest.data() + word + 1;
  const char* end = rest.data() + rest.size();
  const auto [pid_end, e1] = std::from_chars(p, end, pid);
  if (e1 != std::errc() || end - pid_end < 3 || pid_end[0] != '-' || pid_end[1] != 'p')
    return false;
  const auto [ns_end, e2] = std::from_chars(pid_end + 2, end, ns);
  return e2 == std::errc() && end - ns_end == 7 && *ns_end == '-';
}

struct GcArgs {
  bool dry_run = false;
  std::vector<std::string> folders;
};

int run_gc(const GcArgs& args) {
  const bool dry_run = args.dry_run;
  std::size_t removed = 0, kept = 0;
  std::uint64_t freed = 0;
  for (const SegmentEntry& e : list_segments()) {
    // Another user's segment is theirs to remove; a live coordinator's is in use.
    const char* why_kept = e.owner != ::geteuid() ? "owned by another user"
                           : e.foreign_namespace  ? "made in another PID namespace"
                           : e.coordinator_alive  ? "its coordinator is running"
                                                  : nullptr;
    if (why_kept) {
      ++kept;
      fmt::print("kept    /dev/shm/{} ({} bytes): {}\n", e.name, e.bytes, why_kept);
      continue;
    }
    if (!dry_run && !boost::interprocess::shared_memory_object::remove(e.name.c_str())) {
      fmt::print(stderr, "shmgemm: cannot remove /dev/shm/{}\n", e.name);
      continue;
    }
    ++removed;
    freed += e.bytes;
    fmt::print("{} /dev/shm/{} ({} bytes): coordinator {} is gone\n",
               dry_run ? "would remove" : "removed", e.name, e.bytes, e.coordinator);
  }
  // Temporary outputs (".C.npy.shmgemm-<pid>-p<ns>-<random>.tmp") that a coordinator killed
  // at the very end (between naming its finished output and renaming it) left in a folder.
  std::size_t files = 0;
  int status = 0;
  for (const std::string& folder : args.folders) {
    std::error_code ec;
    std::filesystem::directory_iterator it(folder, ec);
    if (ec) {
      fmt::print(stderr, "shmgemm: gc {}: {}\n", folder, ec.message());
      status = 1;
      continue;
    }
    for (const auto& entry : it) {
      const std::string name = entry.path().filename().string();
      int pid = 0;
      std::uint64_t ns = 0;
      struct stat st {};
      if (!parse_temp_name(name, pid, ns) || ::lstat(entry.path().c_str(), &st) != 0 ||
          !S_ISREG(st.st_mode))
        continue;
      const double made = static_cast<double>(st.st_ctim.tv_sec) + st.st_ctim.tv_nsec * 1e-9;
      const char* why_kept = st.st_uid != ::geteuid()         ? "owned by another user"
                             : ns != pid_namespace()          ? "made in another PID namespace"
                             : process_alive_since(pid, made) ? "its coordinator is running"
                                                              : nullptr;
      if (why_kept) {
        fmt::print("kept    {} ({} bytes): {}\n", entry.path().string(), st.st_size, why_kept);
        continue;
      }
      if (!dry_run && ::unlink(entry.path().c_str()) != 0) {
        fmt::print(stderr, "shmgemm: cannot remove {}: {}\n", entry.path().string(),
                   std::strerror(errno));
        status = 1;
        continue;
      }
      ++files;
      freed += static_cast<std::uint64_t>(st.st_size);
      fmt::print("{} {} ({} bytes): coordinator {} is gone\n", dry_run ? "would remove" : "removed",
                 entry.path().string(), st.st_size, pid);
    }
  }
  // The tools' temporary folders ($TMPDIR/shmgemm-demo-<pid>-p<ns>-XXXXXX, ...) of processes
  // killed before they could remove them.
  const char* base = std::getenv("TMPDIR");
  const std::filesystem::path tmp = base && *base ? base : "/tmp";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(tmp, ec)) {
    const std::string name = entry.path().filename().string();
    // "shmgemm-<word>-<pid>-p<ns>-<6 characters>", as tools/temp_dir.cpp names them.
    pid_t pid = 0;
    std::uint64_t ns = 0;
    struct stat st {};
    if (!parse_tool_folder(name, pid, ns) || ::lstat(entry.path().c_str(), &st) != 0 ||
        !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
      continue;
    const double made = static_cast<double>(st.st_ctim.tv_sec) + st.st_ctim.tv_nsec * 1e-9;
    if (ns != pid_namespace() || process_alive_since(pid, made)) continue;
    std::error_code rm;
    if (!dry_run) std::filesystem::remove_all(entry.path(), rm);
    if (rm) {
      fmt::print(stderr, "shmgemm: cannot remove {}: {}\n", entry.path().string(), rm.message());
      status = 1;
      continue;
    }
    ++files;
    fmt::print("{} folder {}: process {} is gone\n", dry_run ? "would remove" : "removed",
               entry.path().string(), pid);
  }
  fmt::print("{} {} segments and {} temporary files or folders ({} bytes), kept {}\n",
             dry_run ? "would remove" : "removed", removed, files, freed, kept);
  return status;
}

}  // namespace

void add_gc(CLI::App& app, Action& action) {
  auto args = std::make_shared<GcArgs>();
  CLI::App* cmd = app.add_subcommand(
      "gc",
      "List shmgemm segments in /dev/shm and remove those of coordinators that are no longer "
      "running (a coordinator killed before its workers attached). Segment names carry the "
      "coordinator's pid and PID namespace: shmgemm-<pid>-p<namespace>-<counter>-<role>-<random>. "
      "Only your own are removed, and only those made in this PID namespace (containers that "
      "share /dev/shm see each other's segments, not each other's processes). With FOLDERs, also "
      "the hidden temporary outputs (.C.npy.shmgemm-<pid>-p<namespace>-<random>.tmp) that a "
      "coordinator killed while renaming its output into place left there.");
  cmd->add_flag("-n,--dry-run", args->dry_run, "list what would be removed, remove nothing");
  cmd->add_option("FOLDER", args->folders,
                  "folders to search for temporary outputs left behind (default: none)");
  cmd->callback([args, &action] { action = [args] { return run_gc(*args); }; });
}

}  // namespace shmgemm::cli
