#include "tools/temp_dir.hpp"

#include <stdlib.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "shmgemm/error.hpp"

namespace shmgemm::cli {

TempDir::TempDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = fmt::format("{}/{}-XXXXXX", base && *base ? base : "/tmp", prefix);
  if (::mkdtemp(templ.data()) == nullptr)
    throw Error(ErrorCode::resource, fmt::format("cannot create a temporary folder {}: {}", templ,
                                                 std::strerror(errno)));
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace shmgemm::cli
