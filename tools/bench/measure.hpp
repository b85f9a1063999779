// Running a child process and measuring it from outside: wall time, and the memory of its
// whole process tree sampled from /proc (the sampler is this process, not part of the tree).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm::cli {

// Memory of one process, from /proc/PID/smaps_rollup, in bytes.
struct ProcessMemory {
  std::uint64_t rss = 0, pss = 0, uss = 0;  // uss: Private_Clean + Private_Dirty
};
bool read_memory(pid_t pid, ProcessMemory& out);

// `root` and all its descendants.
std::vector<pid_t> process_tree(pid_t root);

struct Measured {
  int status = -1;  // exit status, or 128 + signal
  std::string out, err;
  double wall_seconds = 0;
  std::uint64_t peak_pss = 0;        // peak of the summed PSS of the tree
  std::uint64_t peak_child_uss = 0;  // peak USS of any one descendant (a worker)
  std::uint64_t peak_root_uss = 0;   // peak USS of the process started
  std::size_t peak_processes = 0;
};

// Runs argv (argv[0] a path) to its end, capturing stdout and stderr; samples the tree's memory
// every `interval_ms` (0: no sampling). Its environment: this process's, with `env` set.
Measured run_measured(const std::vector<std::string>& argv, double interval_ms,
                      const std::vector<std::pair<std::string, std::string>>& env = {});

// The number under `key` in the JSON object a measured run printed on stdout (shmgemm's --json,
// a peer script's timing). Throws Error(internal) naming `what` when there is none.
double reported_number(const Measured& m, const char* key, const std::string& what);

// The first executable called `name` in $PATH, or "".
std::string find_on_path(const std::string& name);

// `mpirun -q ... -n RANKS` as shmgemm starts it: $SHMGEMM_MPIRUN, else mpirun on PATH; with
// --allow-run-as-root as root (Open MPI refuses root unless told, and the user asked for this
// run), and --hostfile F, or without one (one machine) shared memory only (--mca btl
// self,vader --mca pml ob1) and --oversubscribe when the ranks exceed this machine's cores. Throws
// Error(invalid_argument) starting with `who` when there is no mpirun.
std::vector<std::string> mpirun_command(unsigned ranks, const std::string& hostfile,
                                        std::string_view who, bool quiet = true);

// This executable (/proc/self/exe).
std::string self_executable();

// The `shmgemm multiply` arguments that ask for `options`.
std::vector<std::string> engine_args(const FileOptions& options);

// bench's peer scripts: `given` (--peers-dir), else beside an installed program
// (PREFIX/share/shmgemm/peers), else the source tree this program was built from.
std::filesystem::path peers_folder(const std::string& given);

}  // namespace shmgemm::cli
