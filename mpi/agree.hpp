// Every rank learns whether a step failed anywhere, and why: the lowest failing rank's Error is
// rethrown on every rank, so all of them unwind together and rank 0 can say it once.
#pragma once

#include <mpi.h>

#include <exception>
#include <new>
#include <optional>

#include "shmgemm/error.hpp"

namespace shmgemm::mpi {

// An Error that happened on `rank` (the lowest one that failed), seen on every rank.
class RankFailure : public Error {
 public:
  RankFailure(ErrorCode code, const std::string& message, int rank)
      : Error(code, message), rank_(rank) {}
  int rank() const noexcept { return rank_; }

 private:
  int rank_;
};

// Collective on `comm`: returns when no rank passed an error; else throws the lowest failing
// rank's error as a RankFailure on every rank.
void agree(MPI_Comm comm, const std::optional<Error>& local);

// Runs `step` on this rank, then agree()s over `comm`: a step that throws on one rank throws
// on all of them.
template <class Step>
void on_all_ranks(MPI_Comm comm, Step&& step) {
  std::optional<Error> failed;
  try {
    step();
  } catch (const RankFailure&) {
    throw;  // already agreed by an inner step
  } catch (const Error& e) {
    failed = e;
  } catch (const std::bad_alloc&) {
    failed = Error(ErrorCode::resource, "out of memory");
  } catch (const std::exception& e) {
    failed = Error(ErrorCode::internal, e.what());
  }
  agree(comm, failed);
}

}  // namespace shmgemm::mpi
