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
  if (!committed_ && owner_) ::unlink(path_.c_str());
  g_temp_output[0] = '\0';
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

}  // namespace shmgemm::mpi
