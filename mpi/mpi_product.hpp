// C = A·B across MPI ranks, row-sliced as on one machine: each rank owns a contiguous block of
// rows of C, the ranks of a node share one copy of B in an MPI-3 shared-memory window, each rank
// reads only its rows of A (MPI-IO) and writes its rows of C (collective MPI-IO) into a
// temporary file that is renamed into place once every rank has succeeded. When every rank is
// on one node, B and C are mapped files instead, as the single-machine engine maps them: the
// ranks share B's pages in the page cache and write their rows of C in place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/partition.hpp"
#include "mpi/grid.hpp"
#include "mpi/topology.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::mpi {

// How B reaches every node.
enum class BFrom {
  automatic,  // map on one node, else broadcast
  broadcast,  // the first node's leader reads it, then MPI_Bcast between node leaders
  path,       // every node's leader reads it from the (shared) path
  map,        // every rank maps the file (one node: one copy, in the page cache)
  panel,      // every rank reads its column panel of B (a grid of more than one column)
};

// How a rank gets its rows of A.
enum class AFrom {
  map,   // a read-only mapping of the file; only its rows are touched (C order; Fortran-order
         // rows are strided and always read)
  read,  // MPI-IO through a view of its rows, into the rank's memory
};

struct MpiOptions {
  unsigned threads = 0;  // OpenBLAS threads per rank; 0: the cores the rank owns
  BFrom b_from = BFrom::automatic;
  AFrom a_from = AFrom::map;
  bool mpi_io = false;  // on one node too: B in a window, C by collective MPI-IO
  // A rank silent this long is lost: rank 0 names it and ends the job (mpi/heartbeat.hpp).
  double lost_after = 10;
  double timeout = 0;  // the job's seconds at most; 0: no limit
  // The grid of ranks (rows x cols = ranks); 0: chosen from the shapes and memory_per_rank.
  unsigned grid_rows = 0, grid_cols = 0;
  // Bytes a rank may hold; 0: its node's available memory (or its memory cgroup's) shared
  // among the node's ranks.
  std::uint64_t memory_per_rank = 0;
};

// One rank's part of a run.
struct RankPart {
  int node = 0;
  std::string host;
  RowRange rows;
  RowRange cols;  // its columns of C: all of them in the row decomposition
  unsigned threads = 0;
  double predicted_seconds = 0;  // the cost model's time for its block
};

// The slowest rank's seconds in each phase.
struct Phases {
  double validate = 0, open_output = 0, read_b = 0, read_a = 0, compute = 0, write_c = 0;
};

struct MpiReport {
  // What every product reports (to_json's keys): the shapes, dtype, ranks as workers, the
  // threads of each, the plan, the seconds of the call (rank 0) and of the slowest rank's product.
  Report base;
  int ranks = 1, nodes = 1;
  bool one_rank_per_node = false;
  BFrom b_from = BFrom::broadcast;  // as resolved: never automatic
  bool a_mapped = false;            // the ranks mapped their rows of A (else read them with MPI-IO)
  bool c_mapped = false;        // the ranks wrote their rows of C in place (else collective MPI-IO)
  std::vector<RankPart> parts;  // one per rank
  Grid grid;                    // the ranks' grid (one column: rows only)
  std::uint64_t memory_per_rank = 0;  // the budget the grid was chosen within
  Phases phases;
  std::uint64_t b_bytes = 0;
  // Bytes of B sent between nodes by MPI (broadcast), and read from the file system by leaders.
  std::uint64_t b_bytes_between_nodes = 0, b_bytes_read = 0;
};

// Collective on MPI_COMM_WORLD. Throws RankFailure on every rank when any rank failed (the
// lowest failing rank's message); the output is then left as it was and the temporary file
// removed. The report is complete on rank 0.
MpiReport multiply_mpi(const Topology& topo, const std::filesystem::path& a,
                       const std::filesystem::path& b, const std::filesystem::path& out,
                       const MpiOptions& options);

}  // namespace shmgemm::mpi
