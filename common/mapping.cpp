#include "common/mapping.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "shmgemm/error.hpp"

namespace shmgemm {

Fd memory_file(const char* name, std::size_t bytes, std::string_view what) {
  Fd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    throw Error(ErrorCode::resource,
                fmt::format("cannot create {} ({} bytes): {}", what, bytes, std::strerror(errno)));
  return fd;
}

std::string file_contents(const Fd& fd) {
  std::string s;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t n = retry_eintr([&] { return ::pread(fd.get(), buf, sizeof buf, at); });
    if (n <= 0) return s;
    s.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
}

Mapping::Mapping(std::size_t bytes, int prot, int flags, int fd, std::string_view what) {
  void* p = ::mmap(nullptr, bytes, prot, flags, fd, 0);
  if (p == MAP_FAILED)
    throw Error(ErrorCode::resource,
                fmt::format("cannot map {} ({} bytes): {}", what, bytes, std::strerror(errno)));
  data_ = static_cast<std::byte*>(p);
  size_ = bytes;
}

Mapping Mapping::try_map(std::size_t bytes, int prot, int flags, int fd) noexcept {
  void* p = ::mmap(nullptr, bytes, prot, flags, fd, 0);
  if (p == MAP_FAILED) return {};
  return {static_cast<std::byte*>(p), bytes};
}

std::shared_ptr<void> Mapping::share() && {
  const std::size_t bytes = size_;
  void* p = std::exchange(data_, nullptr);
  size_ = 0;
  return {p, [bytes](void* q) { ::munmap(q, bytes); }};
}

}  // namespace shmgemm
