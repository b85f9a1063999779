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
  int code = local && rank == first ? static_cast<int>(local->code()) : 0;
  std::string message = local && rank == first ? local->what() : std::string();
  unsigned long long length = message.size();
  check(MPI_Bcast(&code, 1, MPI_INT, first, comm), "MPI_Bcast");
  check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, first, comm), "MPI_Bcast");
  message.resize(length);
  check(MPI_Bcast(message.data(), static_cast<int>(length), MPI_CHAR, first, comm), "MPI_Bcast");
  throw RankFailure(static_cast<ErrorCode>(code), message, first);
}

}  // namespace shmgemm::mpi
