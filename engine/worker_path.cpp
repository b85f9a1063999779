#include "engine/worker_path.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "shmgemm/error.hpp"

namespace fs = std::filesystem;

namespace shmgemm::detail {

std::string worker_executable() {
  if (const char* env = std::getenv("SHMGEMM_WORKER"); env && *env) {
    if (::access(env, X_OK) != 0)
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("SHMGEMM_WORKER={}: not an executable file", env));
    return env;
  }
  std::vector<fs::path> candidates;
  // Beside the program (the shmgemm command and the build tree's programs).
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(self.parent_path() / "shmgemm-worker");
  // Relative to this library, where `cmake --install` put them both.
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&worker_executable), &info) && info.dli_fname)
    candidates.push_back(fs::path(info.dli_fname).parent_path() / SHMGEMM_WORKER_FROM_LIBRARY);
  candidates.push_back(SHMGEMM_BUILD_WORKER);
  candidates.push_back(SHMGEMM_INSTALLED_WORKER);
  std::string looked;
  for (const fs::path& p : candidates) {
    if (::access(p.c_str(), X_OK) == 0) return fs::weakly_canonical(p).string();
    looked += (looked.empty() ? "" : ", ") + p.string();
  }
  throw Error(ErrorCode::resource,
              fmt::format("cannot find shmgemm-worker (looked at {}); set SHMGEMM_WORKER to its "
                          "path",
                          looked));
}

}  // namespace shmgemm::detail
