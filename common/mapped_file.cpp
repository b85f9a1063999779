#include "common/mapped_file.hpp"

#include <sys/mman.h>

#include <fmt/format.h>
#include <boost/interprocess/file_mapping.hpp>
#include <cstring>
#include <utility>

#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;

namespace shmgemm {

MapError::MapError(const std::string& path, std::string reason)
    : Error(ErrorCode::resource, fmt::format("{}: cannot map: {}", path, reason)),
      reason_(std::move(reason)) {}

bip::mapped_region map_whole_file(const std::string& path, bool writable) {
  const bip::mode_t mode = writable ? bip::read_write : bip::read_only;
  try {
    bip::file_mapping file(path.c_str(), mode);
    return bip::mapped_region(file, mode);
  } catch (const bip::interprocess_exception& e) {
    const int err = e.get_native_error();
    throw MapError(path, err ? std::strerror(err) : e.what());
  }
}

void advise_pages(const std::byte* begin, std::uint64_t bytes, int advice) {
  const std::uintptr_t page = 4096;
  const auto from = reinterpret_cast<std::uintptr_t>(begin);
  const auto first = (from + page - 1) & ~(page - 1);
  const auto end = (from + bytes) & ~(page - 1);
  if (end > first) ::madvise(reinterpret_cast<void*>(first), end - first, advice);
}

}  // namespace shmgemm
