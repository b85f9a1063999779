// A Pool's arena: one shared segment, never named (workers map it through
// /proc/<pid>/fd/N), managed by Boost.Interprocess's allocator; pages reserved as blocks are
// allocated, so a large arena costs nothing until used.
#pragma once

#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <sys/types.h>

#include "common/fd.hpp"

namespace shmgemm::detail {

class PoolArena {
 public:
  // `bytes` of arena; 0: half of /dev/shm's free space (64 MiB to 64 GiB). Throws Error(resource).
  explicit PoolArena(std::size_t bytes);
  // `bytes` bytes, 64-byte aligned, their pages reserved (a full /dev/shm is an error here, not
  // a SIGBUS in a worker), zero-filled unless `zero` is false (for a block that is written
  // whole next). Throws Error(resource). Thread-safe. `footprint`, when given, receives the
  // arena bytes the block takes (its size, header and alignment).
  void* allocate(std::size_t bytes, std::size_t* footprint = nullptr, bool zero = true);
  // Gives a block back; in a process other than the arena's maker (a forked child), nothing:
  // the allocator's state is shared with the maker, whose block it still is.
  void free(void* p) noexcept;
  bool contains(const void* p, std::size_t bytes) const {
    const auto* q = static_cast<const std::byte*>(p);
    return q >= base_ && q + bytes <= base_ + bytes_;
  }
  std::uint64_t offset_of(const void* p) const {
    return std::uint64_t(static_cast<const std::byte*>(p) - base_);
  }
  std::byte* base() const { return base_; }
  std::size_t bytes() const { return bytes_; }
  std::size_t used() const { return memory_->get_size() - memory_->get_free_memory(); }
  // How other processes (spawned workers) map it: /proc/<pid>/fd/<fd>.
  const std::string& path_for_workers() const { return path_; }

 private:
  std::mutex mutex_;  // one allocation or free at a time, so that a footprint is exact
  pid_t owner_ = 0;   // the process that made it
  Fd fd_;             // unnamed (create_unnamed_shm)
  std::size_t bytes_ = 0;
  boost::interprocess::mapped_region region_;
  std::unique_ptr<boost::interprocess::managed_external_buffer> memory_;  // lives in region_
  std::string path_;
  std::byte* base_ = nullptr;
};

}  // namespace shmgemm::detail
