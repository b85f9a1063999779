// `shmgemm gc`: removes the segments of coordinators that died before they could.
#include <unistd.h>

#include <fmt/format.h>
#include <boost/interprocess/shared_memory_object.hpp>

#include "common/segment.hpp"
#include "tools/commands.hpp"

namespace shmgemm::cli {
namespace {

int run_gc(bool dry_run) {
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
  fmt::print("{} {} segments ({} bytes), kept {}\n", dry_run ? "would remove" : "removed", removed,
             freed, kept);
  return 0;
}

}  // namespace

void add_gc(CLI::App& app, Action& action) {
  auto dry_run = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "gc",
      "List shmgemm segments in /dev/shm and remove those of coordinators that are no longer "
      "running (a coordinator killed before its workers attached). Segment names carry the "
      "coordinator's pid and PID namespace: shmgemm-<pid>-p<namespace>-<counter>-<role>-<random>. "
      "Only your own are removed, and only those made in this PID namespace (containers that "
      "share /dev/shm see each other's segments, not each other's processes).");
  cmd->add_flag("-n,--dry-run", *dry_run, "list what would be removed, remove nothing");
  cmd->callback([dry_run, &action] { action = [dry_run] { return run_gc(*dry_run); }; });
}

}  // namespace shmgemm::cli
