#include "tools/cli/temp_dir.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/segment.hpp"
#include "shmgemm/error.hpp"

namespace shmgemm::cli {

TempDir::TempDir(std::string_view prefix, const std::filesystem::path& parent) {
  const char* base = std::getenv("TMPDIR");
  // The pid and PID namespace in the name: `shmgemm gc` removes the folder of a process that
  // was killed before it could (SIGKILL).
  std::string templ = fmt::format("{}/{}-{}-XXXXXX",
                                  !parent.empty() ? parent.string()
                                  : base && *base ? std::string(base)
                                                  : std::string("/tmp"),
                                  prefix, maker_tag(::getpid()));
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
