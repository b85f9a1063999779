// The output of an MPI job under a temporary name beside its target: named by rank 0 and known
// to every rank, removed by rank 0 unless renamed into place, and findable by a signal handler.
#pragma once

#include <mpi.h>

#include <filesystem>
#include <string>

namespace shmgemm::mpi {

class TempOutput {
 public:
  // Collective on `comm`: rank 0 chooses the name (temp_name_beside) and tells the others.
  TempOutput(MPI_Comm comm, const std::filesystem::path& target);
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;
  ~TempOutput();
  const std::string& path() const { return path_; }
  // Rank 0 renames the file over the target. Throws Error naming the target.
  void commit();

 private:
  std::filesystem::path target_;
  std::string path_;
  bool owner_ = false;
  bool committed_ = false;
};

// The path of the temporary output in progress (empty when none), for a signal handler to
// remove: async-signal-safe to read.
const char* temp_output_in_progress();

}  // namespace shmgemm::mpi
