// A whole file mapped with Boost.Interprocess file_mapping.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <string>

namespace shmgemm {

// Maps all of `path`, shared. Throws Error(resource) "PATH: cannot map: REASON".
boost::interprocess::mapped_region map_whole_file(const std::string& path, bool writable);

}  // namespace shmgemm
