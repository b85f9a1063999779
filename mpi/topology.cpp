#include "mpi/topology.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace shmgemm::mpi {
namespace {

Comm split(MPI_Comm comm, int color, int key, const char* what) {
  MPI_Comm out = MPI_COMM_NULL;
  check(MPI_Comm_split(comm, color, key, &out), what);
  return Comm(out);
}

// This rank's share of its host's CPUs, given every host rank's affinity mask.
unsigned own_cores(const Comm& host) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (::sched_getaffinity(0, sizeof mine, &mine) != 0) return 1;
  std::vector<cpu_set_t> all(static_cast<std::size_t>(host.size()));
  check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, host.get()),
        "MPI_Allgather of CPU masks");
  double share = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &mine)) continue;
    int holders = 0;
    for (const cpu_set_t& s : all)
      holders += CPU_ISSET(cpu, &s) ? 1 : 0;
    share += 1.0 / holders;
  }
  return std::max(1u, static_cast<unsigned>(std::lround(share)));
}

}  // namespace

Topology make_topology(bool one_rank_per_node) {
  Topology t;
  t.one_rank_per_node = one_rank_per_node;
  MPI_Comm_rank(MPI_COMM_WORLD, &t.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &t.size);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  t.host = host;

  MPI_Comm shared = MPI_COMM_NULL;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &shared),
        "MPI_Comm_split_type");
  Comm host_comm(shared);
  unsigned cores = own_cores(host_comm);

  if (one_rank_per_node)
    t.node = split(MPI_COMM_WORLD, t.rank, 0, "MPI_Comm_split (one rank per node)");
  else
    t.node = std::move(host_comm);
  t.node_rank = t.node.rank();
  t.node_size = t.node.size();

  // A node's number: its leader's place among the leaders, by world rank.
  t.leaders = split(MPI_COMM_WORLD, t.node_rank == 0 ? 0 : MPI_UNDEFINED, t.rank,
                    "MPI_Comm_split (node leaders)");
  int index = t.node_rank == 0 ? t.leaders.rank() : 0;
  check(MPI_Bcast(&index, 1, MPI_INT, 0, t.node.get()), "MPI_Bcast");
  t.node_index = index;
  t.node_of_rank.resize(static_cast<std::size_t>(t.size));
  check(MPI_Allgather(&t.node_index, 1, MPI_INT, t.node_of_rank.data(), 1, MPI_INT, MPI_COMM_WORLD),
        "MPI_Allgather");
  t.nodes = 1 + *std::max_element(t.node_of_rank.begin(), t.node_of_rank.end());
  std::vector<char> all(sizeof host * static_cast<std::size_t>(t.size));
  check(
      MPI_Allgather(host, sizeof host, MPI_CHAR, all.data(), sizeof host, MPI_CHAR, MPI_COMM_WORLD),
      "MPI_Allgather of host names");
  for (int i = 0; i < t.size; ++i)
    t.hosts.emplace_back(all.data() + sizeof host * static_cast<std::size_t>(i));
  t.cores.resize(static_cast<std::size_t>(t.size));
  check(MPI_Allgather(&cores, 1, MPI_UNSIGNED, t.cores.data(), 1, MPI_UNSIGNED, MPI_COMM_WORLD),
        "MPI_Allgather");
  return t;
}

}  // namespace shmgemm::mpi
