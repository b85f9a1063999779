// An owned file descriptor, and system calls retried on EINTR.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace shmgemm {

// Calls `f` again while it fails with EINTR (a signal arrived; the interrupt check decides
// what to do about it, not the call).
template <class F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto r = f();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

// A move-only owner of one descriptor, with an explicit empty state (-1). The destructor closes
// it and never throws. Thread-safety: none; one owner at a time.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  // How another process (a spawned worker) opens this very file: "/proc/<pid>/fd/<fd>", valid
  // while this descriptor is open and this process lives.
  std::string path_for_others() const {
    return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_);
  }
  // How this process opens it again by path (to map it): "/proc/self/fd/<fd>".
  std::string path_here() const { return "/proc/self/fd/" + std::to_string(fd_); }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and holds `fd` instead.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);  // not retried: on Linux the descriptor is gone even on EINTR
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// pread/pwrite of all `bytes` at `offset`, in calls of at most 1 GiB, retried on EINTR: 0 when
// done, else the failing call's errno, or -1 when the file ended (pread) or took nothing
// (pwrite) first.
template <class Byte, class Call>
int transfer_all(Call call, int fd, Byte* buffer, std::uint64_t offset, std::uint64_t bytes) {
  while (bytes > 0) {
    const ssize_t done = retry_eintr([&] {
      return call(fd, buffer, std::min<std::uint64_t>(bytes, std::uint64_t{1} << 30),
                  off_t(offset));
    });
    if (done < 0) return errno;
    if (done == 0) return -1;
    buffer += done;
    offset += std::uint64_t(done);
    bytes -= std::uint64_t(done);
  }
  return 0;
}
inline int pread_all(int fd, std::byte* to, std::uint64_t offset, std::uint64_t bytes) {
  return transfer_all(::pread, fd, to, offset, bytes);
}
inline int pwrite_all(int fd, const std::byte* from, std::uint64_t offset, std::uint64_t bytes) {
  return transfer_all(::pwrite, fd, from, offset, bytes);
}

}  // namespace shmgemm
