// .npy files on disk: mapped whole (Boost.Interprocess file_mapping) and never read into a
// buffer; outputs written under a temporary name and renamed into place when complete.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

#include "common/dtype.hpp"
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
  const std::byte* data() const {
    return static_cast<const std::byte*>(region_.get_address()) + header_.data_offset;
  }
  // The array as a matrix; requires a 2-D header.
  ConstMatrixRef matrix() const;
  // Unmaps the pages of [offset, offset + bytes) of the data section that this process touched
  // (the file and its page cache are untouched; they map again if read): for memory that no
  // longer needs to count as this process's.
  void drop_pages(std::uint64_t offset, std::uint64_t bytes) const;

 private:
  std::string path_;
  NpyHeader header_;
  boost::interprocess::mapped_region region_;
};

// Checks that an output can be written at `target`: its folder exists and is writable, and
// `target` is not a folder. Throws Error(invalid_argument) naming the path.
void check_output_path(const std::filesystem::path& target);

// A name for a temporary file beside `target`, unique to this process and hidden (a leading dot):
// ".C.npy.shmgemm-PID-RANDOM.tmp".
std::string temp_name_beside(const std::filesystem::path& target);

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

  // Renames the temporary file over the target. Throws Error naming the target on failure.
  void commit();

 private:
  NpyOutput() = default;
  std::string target_;
  std::string temp_path_;  // empty while the file is unnamed
  int fd_ = -1;
  NpyHeader header_;
  boost::interprocess::mapped_region region_;
  bool committed_ = false;
};

}  // namespace shmgemm
