#include "engine/pool_arena.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/mapped_file.hpp"
#include "common/segment.hpp"
#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;

namespace shmgemm::detail {
namespace {

constexpr std::uint64_t kOneMiB = 1 << 20;

std::size_t default_arena_bytes() {
  struct statvfs st {};
  const std::uint64_t free =
      ::statvfs("/dev/shm", &st) == 0 ? std::uint64_t(st.f_bavail) * st.f_frsize : 0;
  return std::clamp<std::uint64_t>(free / 2, 64 * kOneMiB, std::uint64_t{64} << 30);
}

}  // namespace

PoolArena::PoolArena(std::size_t bytes)
    : owner_(::getpid()),
      fd_(create_unnamed_shm("arena")),
      bytes_(bytes ? bytes : default_arena_bytes()) {
  // Sparse: pages are reserved as blocks are allocated.
  if (::ftruncate(fd_.get(), static_cast<off_t>(bytes_)) != 0)
    throw Error(ErrorCode::resource,
                fmt::format("pool: cannot size a {}-byte arena in /dev/shm: {}", bytes_,
                            std::strerror(errno)));
  try {
    region_ = map_whole_file(fd_.path_here(), true);
  } catch (const MapError& e) {
    throw Error(ErrorCode::resource,
                fmt::format("pool: cannot map a {}-byte arena: {} (see PoolOptions::arena_bytes)",
                            bytes_, e.reason()));
  }
  try {
    memory_ = std::make_unique<bip::managed_external_buffer>(bip::create_only,
                                                             region_.get_address(), bytes_);
  } catch (const bip::interprocess_exception& e) {
    throw Error(ErrorCode::resource,
                fmt::format("pool: cannot lay out a {}-byte arena: {}", bytes_, e.what()));
  }
  path_ = fd_.path_for_others();
  base_ = static_cast<std::byte*>(region_.get_address());
}

void* PoolArena::allocate(std::size_t bytes, std::size_t* footprint, bool zero) {
  void* p = nullptr;
  std::unique_lock lock(mutex_);
  const std::size_t before = used();
  try {
    p = memory_->allocate_aligned(std::max<std::size_t>(bytes, 1), 64);
  } catch (const bip::bad_alloc&) {
    throw Error(ErrorCode::resource,
                fmt::format("pool: its {}-byte arena has no room for {} bytes more (see "
                            "PoolOptions::arena_bytes)",
                            bytes_, bytes));
  }
  if (footprint) *footprint = used() - before;
  lock.unlock();
  const auto offset = static_cast<off_t>(offset_of(p));
  if (const int err = ::posix_fallocate(fd_.get(), offset, static_cast<off_t>(bytes)); err) {
    free(p);
    throw Error(ErrorCode::resource, fmt::format("pool: cannot reserve {} bytes in /dev/shm: {}",
                                                 bytes, std::strerror(err)));
  }
  if (zero) std::memset(p, 0, bytes);
  return p;
}

void PoolArena::free(void* p) noexcept {
  if (p == nullptr || ::getpid() != owner_) return;
  const std::lock_guard lock(mutex_);
  memory_->deallocate(p);
}

}  // namespace shmgemm::detail
