// .npy files on disk: mapped whole (Boost.Interprocess file_mapping) and never read into a
// buffer; outputs written under a temporary name and renamed into place when complete.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "common/bus_guard.hpp"
#include "common/dtype.hpp"
#include "common/fd.hpp"
#include "common/matrix.hpp"
#include "common/npy.hpp"

namespace shmgemm {

// A validated, read-only mapping of an existing .npy file. Thread-safety: const methods may be
// called from any thread.
class NpyMapping {
 public:
  // Maps `path` and checks its header and that the file holds exactly the bytes the header
  // announces. Throws Error naming the file: missing, unreadable, not .npy, truncated, ...
  static NpyMapping open(const std::filesystem::path& path);

  const NpyHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // How another process (a spawned worker) maps exactly the file this mapping validated, even
  // if the name has since been given to another file: /proc/<pid>/fd/<fd>.
  std::string path_for_workers() const;
  const std::byte* data() const {
    return static_cast<const std::byte*>(region_.get_address()) + header_.data_offset;
  }
  // The array as a matrix; requires a 2-D header.
  ConstMatrixRef matrix() const;
  // Unmaps the pages of [offset, offset + bytes) of the data section that this process touched
  // (the file and its page cache are untouched; they map again if read): for memory that no
  // longer needs to count as this process's.
  void drop_pages(std::uint64_t offset, std::uint64_t bytes) const;
  // Out of core: starts reading [offset, offset + bytes) of the data section from the disk
  // without waiting (readahead); copies it into `to` (throws Error naming the file when the
  // read fails); drops its pages, and those it shares with its neighbours, from this process
  // and from the page cache once read (memory that must not count as anyone's, a memory
  // cgroup's included).
  void prefetch(std::uint64_t offset, std::uint64_t bytes) const;
  void read(std::uint64_t offset, std::uint64_t bytes, std::byte* to) const;
  void evict(std::uint64_t offset, std::uint64_t bytes) const;

 private:
  std::string path_;
  Fd fd_;  // the file opened once: mapped, and handed to spawned workers, by this descriptor
  NpyHeader header_;
  boost::interprocess::mapped_region region_;
  MappingGuard guard_;  // a SIGBUS in region_ (the file shrank): one line naming the file
};

// Where an output named `target` is written, by one rule for every program that writes one:
// - a symlink is followed (a chain of them too, dangling or not), as np.save writes through
//   it, and the file it names is the target;
// - a regular file there is replaced in one rename, and the new file keeps its mode (and its
//   owner and group where this process may set them); hard links to the old file keep the old
//   contents, as after any atomic replacement;
// - no file there: a new one, mode 0666 less the umask, as np.save makes it;
// - a folder, device, FIFO or socket there is refused;
// and the folder must exist and be writable, and the name fit (NAME_MAX, PATH_MAX).
// Throws Error(invalid_argument) naming `target` and the problem.
struct OutputTarget {
  std::filesystem::path path;  // the file to create or replace (symlinks resolved)
  bool exists = false;         // a regular file is there now
  unsigned mode = 0;           // its permission bits, when it exists
  unsigned uid = 0, gid = 0;   // its owner and group, when it exists
};
OutputTarget resolve_output(const std::filesystem::path& target);

// resolve_output(target), for the check alone.
void check_output_path(const std::filesystem::path& target);

// A name for a temporary file beside `target`, unique to this process and hidden (a leading
// dot): ".C.npy.shmgemm-PID-pNAMESPACE-RANDOM.tmp", the target's name shortened so that the
// whole fits in NAME_MAX. `shmgemm gc FOLDER` finds those of coordinators that are gone.
std::string temp_name_beside(const std::filesystem::path& target);

// Whether `name` (a file name, no folder) is such a temporary, or Open MPI's lock-test file
// beside one ("<temporary>.locktest.<rank>"); sets the coordinator's pid and PID namespace.
bool parse_temp_name(std::string_view name, pid_t& pid, std::uint64_t& ns);

// A new .npy file being written: an unnamed file (O_TMPFILE) in the target's folder, or a
// named temporary beside the target where the filesystem has no O_TMPFILE, created at its final
// size with its blocks reserved and mapped read-write. commit() puts it in place of the target
// in one rename; until then the target is untouched, and destroying an uncommitted output (or
// the death of this process, for an unnamed file) leaves nothing behind. Thread-safety: none.
class NpyOutput {
 public:
  static NpyOutput create(const std::filesystem::path& target, DType dtype,
                          std::span<const std::uint64_t> shape);

  NpyOutput(NpyOutput&& other) noexcept;
  NpyOutput& operator=(NpyOutput&&) = delete;
  NpyOutput(const NpyOutput&) = delete;
  NpyOutput& operator=(const NpyOutput&) = delete;
  ~NpyOutput();

  std::byte* data() const {
    return static_cast<std::byte*>(region_.get_address()) + header_.data_offset;
  }
  const NpyHeader& header() const { return header_; }
  // A path by which other processes (spawned workers) can map the file until commit():
  // /proc/<pid>/fd/<fd> for an unnamed file.
  std::string path_for_workers() const;
  const std::string& target() const { return target_; }
  MatrixRef matrix() const;
  // Unmaps the written pages in [offset, offset + bytes) of the data section: they stay in the
  // page cache, dirty, and reach the file as usual.
  void drop_pages(std::uint64_t offset, std::uint64_t bytes) const;
  // Out of core: writes [offset, offset + bytes) of the data section to the file now, and drops
  // its pages from this process and from the page cache. Throws Error naming the target when
  // the write fails (a full disk).
  void write_back(std::uint64_t offset, std::uint64_t bytes) const;

  // Renames the temporary file over the target. With `durable`, the data reach the disk first
  // (fdatasync) and the folder's new entry after (fsync), so that a power loss leaves either
  // the old file or the whole new one. Throws Error naming the target on failure.
  void commit(bool durable = false);

 private:
  NpyOutput() = default;
  std::string target_;     // as the caller named it, for messages
  std::string path_;       // the file replaced (symlinks resolved)
  std::string temp_path_;  // empty while the file is unnamed
  Fd fd_;
  NpyHeader header_;
  boost::interprocess::mapped_region region_;
  bool committed_ = false;
};

}  // namespace shmgemm
