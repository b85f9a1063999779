// An owned memory mapping: the one place, with Fd, where shmgemm holds what the system gives it.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/fd.hpp"

namespace shmgemm {

// A new file in memory (memfd_create, close-on-exec) of `bytes` zero bytes, named `name` in
// /proc. Throws Error(resource): "cannot create WHAT (N bytes): the system's reason".
Fd memory_file(const char* name, std::size_t bytes, std::string_view what);
// Everything file `fd` holds, read from its start (a memory file another process wrote).
std::string file_contents(const Fd& fd);

// A move-only owner of one mmap'd region, with an explicit empty state. The destructor unmaps it
// and never throws. Thread-safety: none; one owner at a time.
class Mapping {
 public:
  Mapping() = default;
  // mmap(nullptr, bytes, prot, flags, fd, 0). Throws Error(resource): "cannot map WHAT (N
  // bytes): the system's reason".
  Mapping(std::size_t bytes, int prot, int flags, int fd, std::string_view what);
  // The same, empty on failure (errno says why): for probes whose failure is an answer.
  static Mapping try_map(std::size_t bytes, int prot, int flags, int fd) noexcept;

  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  std::byte* data() const noexcept { return data_; }
  template <class T>
  T* as() const noexcept {
    return reinterpret_cast<T*>(data_);
  }
  std::size_t size() const noexcept { return size_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }
  // Unmaps the region held (if any); the mapping is then empty.
  void reset() noexcept {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  // The region as a pointer shared by its users, unmapped with the last of them; this owner is
  // then empty.
  std::shared_ptr<void> share() &&;

 private:
  Mapping(std::byte* data, std::size_t size) noexcept : data_(data), size_(size) {}
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace shmgemm
