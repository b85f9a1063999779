// The output of an MPI job under a temporary name beside its target: named by rank 0 and known
// to every rank, removed by rank 0 unless renamed into place, and findable by a signal handler.
#pragma once

#include <mpi.h>

#include <filesystem>

#include <string>
#include "common/npy_file.hpp"

namespace shmgemm::mpi {

class TempOutput {
 public:
  // Collective on `comm`: rank 0 resolves the target (resolve_output: the rule every output
  // follows), chooses the name (temp_name_beside) and tells the others.
  TempOutput(MPI_Comm comm, const std::filesystem::path& target);
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;
  ~TempOutput();
  const std::string& path() const { return path_; }
  // Rank 0 gives the temporary file the replaced file's mode and owner (call it once the file
  // exists, so that a private result is never readable by others). Idempotent.
  void keep_mode();
  // Rank 0 notes the lock file Open MPI's I/O made beside the temporary file when it was opened
  // (its shared file pointer across nodes: "<temporary>-<job>-<pid>.lock"), which a job killed
  // or aborted leaves behind: remove_temp_output() removes it too. Call it once the file is open.
  void note_lock_file();
  // Rank 0 gives the file the replaced file's mode and owner, and renames it over the target.
  // Throws Error naming the target.
  void commit();

 private:
  std::filesystem::path target_;
  OutputTarget where_;  // rank 0's: the file replaced (symlinks resolved), the mode it keeps
  std::string path_;
  bool owner_ = false;
  bool committed_ = false;
};

// The path of the temporary output in progress (empty when none): async-signal-safe to read.
const char* temp_output_in_progress();

// Removes the temporary output in progress and the lock file noted beside it, if any: for a
// signal handler, or a rank ending the job. Async-signal-safe.
void remove_temp_output();

}  // namespace shmgemm::mpi
