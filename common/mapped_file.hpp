// A whole file mapped with Boost.Interprocess file_mapping.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "shmgemm/error.hpp"

namespace shmgemm {

// map_whole_file's failure, Error(resource) "PATH: cannot map: REASON". reason() is REASON alone,
// for callers that name the file otherwise (a descriptor's /proc path is not what a user knows).
class MapError : public Error {
 public:
  MapError(const std::string& path, std::string reason);
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string reason_;
};

// Maps all of `path`, shared. Throws MapError.
boost::interprocess::mapped_region map_whole_file(const std::string& path, bool writable);

// madvise(advice) on the whole pages inside [begin, begin + bytes): pages shared with a
// neighbouring range are left alone. A hint: errors are ignored.
void advise_pages(const std::byte* begin, std::uint64_t bytes, int advice);

}  // namespace shmgemm
