// A file that shrinks under its mapping makes the next read of the lost pages raise SIGBUS. For
// the mappings registered here (the operands' files), that becomes one line naming the file
// and exit status 1 instead of a crash: the output is an unnamed file and every segment is
// unnamed memory, so nothing is left behind. A SIGBUS anywhere else keeps its default action.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace shmgemm {

// Registers [base, base + bytes) as the mapping of `what` (a file name), and installs the
// handler on first use. Up to 64 mappings at once; more are simply not guarded. Thread-safe.
void guard_mapping(const void* base, std::size_t bytes, std::string_view what) noexcept;
void unguard_mapping(const void* base) noexcept;

// In a worker: write the message into `message` (a NUL-terminated field of `bytes`), the code
// of a bad file (ErrorCode::bad_file) into `code`, and store `failed` into `state` before
// exiting, so that the coordinator reports it as the worker's own, with the code it would have
// in process.
void report_bus_errors_to(char* message, std::size_t bytes, std::int32_t* code,
                          std::atomic<std::uint32_t>* state, std::uint32_t failed) noexcept;

// The handle a mapping holds: unregisters when destroyed. Move-only.
class MappingGuard {
 public:
  MappingGuard() = default;
  MappingGuard(const void* base, std::size_t bytes, std::string_view what) noexcept : base_(base) {
    guard_mapping(base, bytes, what);
  }
  MappingGuard(MappingGuard&& other) noexcept : base_(other.base_) { other.base_ = nullptr; }
  MappingGuard& operator=(MappingGuard&& other) noexcept {
    if (this != &other) {
      if (base_) unguard_mapping(base_);
      base_ = other.base_;
      other.base_ = nullptr;
    }
    return *this;
  }
  MappingGuard(const MappingGuard&) = delete;
  MappingGuard& operator=(const MappingGuard&) = delete;
  ~MappingGuard() {
    if (base_) unguard_mapping(base_);
  }

 private:
  const void* base_ = nullptr;
};

}  // namespace shmgemm
