// Where the ranks are: which ones share a node (and so one copy of B), the node leaders that
// carry B between nodes, and the cores each rank owns.
#pragma once

#include <string>
#include <vector>

#include "mpi/mpi_support.hpp"

namespace shmgemm::mpi {

struct Topology {
  int rank = 0, size = 1;  // in MPI_COMM_WORLD
  // The ranks grouped as one node: those that share memory (MPI_COMM_TYPE_SHARED), or this
  // rank alone with one_rank_per_node.
  Comm node;
  int node_rank = 0, node_size = 1;
  int node_index = 0, nodes = 1;  // this node's number (by its lowest rank), how many nodes
  // The node leaders (node_rank 0), in order of node_index; MPI_COMM_NULL on other ranks.
  Comm leaders;
  std::vector<int> node_of_rank;   // node_index of every rank
  std::vector<unsigned> cores;     // cores every rank owns (see own_cores)
  std::string host;                // this rank's host name
  std::vector<std::string> hosts;  // every rank's
  bool one_rank_per_node = false;
};

// Collective on MPI_COMM_WORLD.
//
// Cores a rank owns: the CPUs of its affinity mask, each shared equally among the ranks of its
// host whose masks hold it (so two ranks bound to a core each own one; two unbound ranks on a
// 2-core host own one each; four own half a core each, counted as one). Ranks grouped as nodes
// by one_rank_per_node still share their host's cores.
Topology make_topology(bool one_rank_per_node);

}  // namespace shmgemm::mpi
