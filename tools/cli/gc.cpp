// `shmgemm gc`: removes the segments of coordinators that died before they could.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <boost/interprocess/shared_memory_object.hpp>

#include "common/npy_file.hpp"
#include "common/segment.hpp"
#include "tools/cli/commands.hpp"

namespace shmgemm::cli {
namespace {

// "shmgemm-<word>-<maker tag>-XXXXXX": a tool's temporary folder (tools/cli/temp_dir.cpp).
bool parse_tool_folder(std::string_view name, pid_t& pid, std::uint64_t& ns) {
  if (!name.starts_with("shmgemm-")) return false;
  const std::size_t word = name.find('-', 8);
  if (word == std::string_view::npos || word == 8) return false;
  const std::string_view rest = name.substr(word + 1);
  const std::size_t tag = parse_maker_tag(rest, pid, ns);
  return tag > 0 && rest.size() - tag == 6;
}

struct GcArgs {
  bool dry_run = false;
  std::vector<std::string> folders;
};

// Something a killed process may have left: a segment's name, a temporary output, a folder.
struct Leftover {
  std::string shown;  // "/dev/shm/NAME (N bytes)", "PATH (N bytes)", "folder PATH"
  uid_t owner = 0;
  pid_t pid = 0;
  std::uint64_t ns = 0;
  double made = 0;
  std::uint64_t bytes = 0;
  bool segment = false;
  bool announce_kept = true;
  std::function<std::string()> remove;  // empty on success, else why not
};

std::vector<Leftover> find_leftovers(const GcArgs& args, int& status) {
  std::vector<Leftover> found;
  for (const SegmentEntry& e : list_segments())
    found.push_back({fmt::format("/dev/shm/{} ({} bytes)", e.name, e.bytes), e.owner, e.coordinator,
                     e.namespace_, e.made, e.bytes, true, true, [name = e.name] {
                       return boost::interprocess::shared_memory_object::remove(name.c_str())
                                  ? std::string()
                                  : "cannot remove /dev/shm/" + name;
                     }});
  // Temporary outputs (".C.npy.shmgemm-<maker tag>-<random>.tmp") that a coordinator killed at
  // the very end (between naming its finished output and renaming it) left in a folder.
  for (const std::string& folder : args.folders) {
    std::error_code ec;
    std::filesystem::directory_iterator it(folder, ec);
    if (ec) {
      fmt::print(stderr, "shmgemm: gc {}: {}\n", folder, ec.message());
      status = 1;
      continue;
    }
    for (const auto& entry : it) {
      pid_t pid = 0;
      std::uint64_t ns = 0;
      struct stat st {};
      if (!parse_temp_name(entry.path().filename().string(), pid, ns) ||
          ::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        continue;
      const std::string path = entry.path().string();
      found.push_back({fmt::format("{} ({} bytes)", path, st.st_size), st.st_uid, pid, ns,
                       changed_at(st), static_cast<std::uint64_t>(st.st_size), false, true, [path] {
                         return ::unlink(path.c_str()) == 0
                                    ? std::string()
                                    : fmt::format("cannot remove {}: {}", path,
                                                  std::strerror(errno));
                       }});
    }
  }
  // The tools' temporary folders ($TMPDIR/shmgemm-demo-<maker tag>-XXXXXX, ...) of processes
  // killed before they could remove them.
  const char* base = std::getenv("TMPDIR");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(base && *base ? base : "/tmp", ec)) {
    pid_t pid = 0;
    std::uint64_t ns = 0;
    struct stat st {};
    if (!parse_tool_folder(entry.path().filename().string(), pid, ns) ||
        ::lstat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      continue;
    const std::filesystem::path path = entry.path();
    found.push_back(
        {"folder " + path.string(), st.st_uid, pid, ns, changed_at(st), 0, false, false, [path] {
           std::error_code rm;
           std::filesystem::remove_all(path, rm);
           return rm ? fmt::format("cannot remove {}: {}", path.string(), rm.message())
                     : std::string();
         }});
  }
  return found;
}

int run_gc(const GcArgs& args) {
  int status = 0;
  std::size_t segments = 0, others = 0, kept = 0;
  std::uint64_t freed = 0;
  for (const Leftover& l : find_leftovers(args, status)) {
    // Another user's is theirs to remove; a running maker's is in use.
    if (const char* why = why_kept(l.owner, l.pid, l.ns, l.made)) {
      if (l.announce_kept) {
        ++kept;
        fmt::print("kept    {}: {}\n", l.shown, why);
      }
      continue;
    }
    if (!args.dry_run) {
      if (const std::string problem = l.remove(); !problem.empty()) {
        fmt::print(stderr, "shmgemm: {}\n", problem);
        status = 1;
        continue;
      }
    }
    ++(l.segment ? segments : others);
    freed += l.bytes;
    fmt::print("{} {}: {} {} is gone\n", args.dry_run ? "would remove" : "removed", l.shown,
               l.announce_kept ? "coordinator" : "process", l.pid);
  }
  fmt::print("{} {} segments and {} temporary files or folders ({} bytes), kept {}\n",
             args.dry_run ? "would remove" : "removed", segments, others, freed, kept);
  return status;
}

}  // namespace

void add_gc(CLI::App& app, Action& action) {
  const auto [cmd, args] = add_command<GcArgs>(
      app, action, "gc", "remove what killed runs left in /dev/shm, $TMPDIR and output folders",
      run_gc);
  cmd->footer(
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
}

}  // namespace shmgemm::cli
