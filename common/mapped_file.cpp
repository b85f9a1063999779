#include "common/mapped_file.hpp"

#include <fmt/format.h>
#include <boost/interprocess/file_mapping.hpp>
#include <cstring>

#include "shmgemm/error.hpp"

namespace bip = boost::interprocess;

namespace shmgemm {

bip::mapped_region map_whole_file(const std::string& path, bool writable) {
  const bip::mode_t mode = writable ? bip::read_write : bip::read_only;
  try {
    bip::file_mapping file(path.c_str(), mode);
    return bip::mapped_region(file, mode);
  } catch (const bip::interprocess_exception& e) {
    const int err = e.get_native_error();
    throw Error(ErrorCode::resource,
                fmt::format("{}: cannot map: {}", path, err ? std::strerror(err) : e.what()));
  }
}

}  // namespace shmgemm
