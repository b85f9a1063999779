#include "mpi/temp_output.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/npy_file.hpp"
#include "mpi/mpi_support.hpp"

namespace shmgemm::mpi {
namespace {

// Where signal handlers find the temporary output: a fixed buffer, written before the file
// exists and cleared once it is renamed or removed.
char g_temp_output[4096] = {};
char g_temp_lock[4096] = {};

}  // namespace

TempOutput::TempOutput(MPI_Comm comm, const std::filesystem::path& target) : target_(target) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  owner_ = rank == 0;
  if (owner_) where_ = resolve_output(target);
  path_ = broadcast_string(comm, owner_ ? temp_name_beside(where_.path) : std::string(), 0);
  std::snprintf(g_temp_output, sizeof g_temp_output, "%s", path_.c_str());
}

TempOutput::~TempOutput() {
  if (!committed_ && owner_) remove_temp_output();
  g_temp_output[0] = '\0';
  g_temp_lock[0] = '\0';
}

void TempOutput::note_lock_file() {
  if (!owner_ || g_temp_lock[0] != '\0') return;
  const std::filesystem::path temp(path_);
  const std::string prefix = temp.filename().string() + "-";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(temp.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".lock")) {
      std::snprintf(g_temp_lock, sizeof g_temp_lock, "%s", entry.path().c_str());
      return;
    }
  }
}

void TempOutput::keep_mode() {
  if (!owner_ || !where_.exists) return;
  if (::chown(path_.c_str(), where_.uid, where_.gid) != 0)
    static_cast<void>(::chown(path_.c_str(), static_cast<uid_t>(-1), where_.gid));
  ::chmod(path_.c_str(), where_.mode);
}

void TempOutput::commit() {
  keep_mode();
  if (owner_ && ::rename(path_.c_str(), where_.path.c_str()) != 0)
    throw Error(ErrorCode::resource, fmt::format("{}: cannot rename {} into place: {}",
                                                 target_.string(), path_, std::strerror(errno)));
  committed_ = true;
}

const char* temp_output_in_progress() {
  return g_temp_output;
}

void remove_temp_output() {
  if (g_temp_output[0] != '\0') ::unlink(g_temp_output);
  if (g_temp_lock[0] != '\0') ::unlink(g_temp_lock);
}

}  // namespace shmgemm::mpi
