// A whole file mapped with Boost.Interprocess file_mapping.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace shmgemm {

// Maps all of `path`, shared. Throws Error(resource) "PATH: cannot map: REASON".
boost::interprocess::mapped_region map_whole_file(const std::string& path, bool writable);

// madvise(advice) on the whole pages inside [begin, begin + bytes): pages shared with a
// neighbouring range are left alone. A hint: errors are ignored.
void advise_pages(const std::byte* begin, std::uint64_t bytes, int advice);

}  // namespace shmgemm
