// A temporary folder for the tools' generated operands, removed with everything in it.
#pragma once

#include <filesystem>
#include <string_view>

namespace shmgemm::cli {

class TempDir {
 public:
  // Creates $TMPDIR (or /tmp)/<prefix>-XXXXXX, or in `parent` when given. Throws
  // Error(resource).
  explicit TempDir(std::string_view prefix, const std::filesystem::path& parent = {});
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace shmgemm::cli
