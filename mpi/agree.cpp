#include "mpi/agree.hpp"

#include <string>

#include "mpi/mpi_support.hpp"

namespace shmgemm::mpi {

void agree(MPI_Comm comm, const std::optional<Error>& local) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int mine = local ? rank : size;
  int first = size;
  check(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (first == size) return;
  // The failing rank tells the others its code and message.
  const bool mine_first = local && rank == first;
  int code = mine_first ? static_cast<int>(local->code()) : 0;
  check(MPI_Bcast(&code, 1, MPI_INT, first, comm), "MPI_Bcast");
  const std::string message =
      broadcast_string(comm, mine_first ? local->what() : std::string(), first);
  throw RankFailure(static_cast<ErrorCode>(code), message, first);
}

}  // namespace shmgemm::mpi
