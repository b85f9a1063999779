#include "engine/worker_path.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <cstdlib>
#include <filesystem>

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
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path beside = self.parent_path() / "shmgemm-worker";
  if (!ec && ::access(beside.c_str(), X_OK) == 0) return beside.string();
  const fs::path installed = SHMGEMM_INSTALLED_WORKER;
  if (::access(installed.c_str(), X_OK) == 0) return installed.string();
  throw Error(ErrorCode::resource,
              fmt::format("cannot find shmgemm-worker (looked in {} and {}); set SHMGEMM_WORKER "
                          "to its path",
                          beside.parent_path().string(), installed.parent_path().string()));
}

}  // namespace shmgemm::detail
