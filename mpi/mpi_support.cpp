#include "mpi/mpi_support.hpp"

#include <stdlib.h>

#include <fmt/format.h>

#include <algorithm>
#include <climits>

namespace shmgemm::mpi {
namespace {

std::string error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", rc);
  return std::string(text, static_cast<std::size_t>(length));
}

// Pieces of at most kMaxPieceBytes that every rank of
// `comm` agrees to make: the largest count any rank needs.
std::uint64_t pieces_on_all(MPI_Comm comm, std::uint64_t bytes) {
  std::uint64_t mine = (bytes + kMaxPieceBytes - 1) / kMaxPieceBytes, most = 0;
  check(MPI_Allreduce(&mine, &most, 1, MPI_UINT64_T, MPI_MAX, comm), "MPI_Allreduce");
  return most;
}

int piece_count(std::uint64_t bytes, std::uint64_t done) {
  return static_cast<int>(std::min(kMaxPieceBytes, bytes - std::min(bytes, done)));
}

// Calls `piece(done, count)` for each piece of `bytes`, as many times on every rank of `comm`
// (a rank with fewer bytes makes calls of 0 bytes): collective calls in pieces.
template <class Piece>
void in_pieces(MPI_Comm comm, std::uint64_t bytes, Piece&& piece) {
  const std::uint64_t pieces = pieces_on_all(comm, bytes);
  std::uint64_t done = 0;
  for (std::uint64_t p = 0; p < pieces; ++p) {
    const int count = piece_count(bytes, done);
    piece(done, count);
    done += static_cast<std::uint64_t>(count);
  }
}

}  // namespace

void check(int rc, std::string_view what, ErrorCode code) {
  if (rc != MPI_SUCCESS) throw Error(code, fmt::format("{}: {}", what, error_string(rc)));
}

Session::Session(int& argc, char**& argv) {
  int provided = 0;
  // Open MPI's collective writer (ompio's fcoll vulcan) may write asynchronously, and ompio's
  // progress function walks its list of such requests without a lock: called at once from the
  // heartbeat's MPI calls and from a write's wait, a rank crashed (SIGSEGV in
  // mca_common_ompio_progress). Synchronous writes leave that list empty. A user's own setting
  // stands.
  ::setenv("OMPI_MCA_fcoll_vulcan_async_io", "2", /*overwrite=*/0);
  // The main thread and the heartbeat's (mpi/heartbeat.hpp) call MPI; OpenBLAS's threads never
  // do.
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
    throw Error(ErrorCode::resource, "MPI_Init_thread failed");
  if (provided < MPI_THREAD_MULTIPLE)
    throw Error(ErrorCode::unsupported,
                "this MPI library does not support MPI_THREAD_MULTIPLE, which the heartbeats "
                "between ranks need");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  // Files opened later take this default.
  MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

Session::~Session() {
  MPI_Finalize();
}

int Comm::rank() const {
  int r = 0;
  MPI_Comm_rank(get(), &r);
  return r;
}

int Comm::size() const {
  int s = 0;
  MPI_Comm_size(get(), &s);
  return s;
}

Datatype::Datatype(MPI_Datatype t) : Handle(t) {
  check(MPI_Type_commit(&t), "MPI_Type_commit");
}

Datatype row_block_type(std::uint64_t rows, std::uint64_t cols, std::size_t item, bool fortran,
                        std::uint64_t row_begin, std::uint64_t row_end) {
  return block_type(rows, cols, item, fortran, row_begin, row_end, 0, cols);
}

Datatype block_type(std::uint64_t rows, std::uint64_t cols, std::size_t item, bool fortran,
                    std::uint64_t row_begin, std::uint64_t row_end, std::uint64_t col_begin,
                    std::uint64_t col_end) {
  MPI_Datatype element = MPI_DATATYPE_NULL;
  check(MPI_Type_contiguous(static_cast<int>(item), MPI_BYTE, &element), "MPI_Type_contiguous");
  Datatype element_type(element);
  const int sizes[2] = {static_cast<int>(rows), static_cast<int>(cols)};
  const int subsizes[2] = {static_cast<int>(row_end - row_begin),
                           static_cast<int>(col_end - col_begin)};
  const int starts[2] = {static_cast<int>(row_begin), static_cast<int>(col_begin)};
  MPI_Datatype block = MPI_DATATYPE_NULL;
  check(MPI_Type_create_subarray(2, sizes, subsizes, starts,
                                 fortran ? MPI_ORDER_FORTRAN : MPI_ORDER_C, element_type.get(),
                                 &block),
        "MPI_Type_create_subarray");
  return Datatype(block);
}

File::File(MPI_Comm comm, const std::string& path, int amode, ErrorCode code) : path_(path) {
  check(MPI_File_open(comm, path.c_str(), amode, MPI_INFO_NULL, &f_), path, code);
}

File::~File() {
  if (f_ != MPI_FILE_NULL) MPI_File_close(&f_);
}

void File::close() {
  if (f_ == MPI_FILE_NULL) return;
  check(MPI_File_close(&f_), path_);
}

void File::set_view(std::uint64_t offset, MPI_Datatype filetype, MPI_Datatype etype) {
  check(MPI_File_set_view(f_, static_cast<MPI_Offset>(offset), etype, filetype, "native",
                          MPI_INFO_NULL),
        path_);
}

void File::read_all(MPI_Comm comm, std::byte* to, std::uint64_t bytes) {
  in_pieces(comm, bytes, [&](std::uint64_t done, int count) {
    MPI_Status status;
    check(MPI_File_read_all(f_, to + done, count, MPI_BYTE, &status),
          fmt::format("{}: read", path_), ErrorCode::bad_file);
  });
}

void File::write_all(MPI_Comm comm, const std::byte* from, std::uint64_t bytes) {
  in_pieces(comm, bytes, [&](std::uint64_t done, int count) {
    MPI_Status status;
    check(MPI_File_write_all(f_, from + done, count, MPI_BYTE, &status),
          fmt::format("{}: write", path_));
  });
}

void File::write_at_all(MPI_Comm comm, std::uint64_t offset, const std::byte* from,
                        std::uint64_t bytes) {
  in_pieces(comm, bytes, [&](std::uint64_t done, int count) {
    MPI_Status status;
    check(MPI_File_write_at_all(f_, static_cast<MPI_Offset>(offset + done), from + done, count,
                                MPI_BYTE, &status),
          fmt::format("{}: write", path_));
  });
}

SharedWindow::SharedWindow(MPI_Comm node, std::uint64_t bytes) {
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  const MPI_Aint mine = node_rank == 0 ? static_cast<MPI_Aint>(bytes) : 0;
  void* base = nullptr;
  check(MPI_Win_allocate_shared(mine, 1, MPI_INFO_NULL, node, &base, &win_),
        fmt::format("MPI_Win_allocate_shared ({} bytes for B)", bytes));
  MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN);
  MPI_Aint size = 0;
  int unit = 0;
  check(MPI_Win_shared_query(win_, 0, &size, &unit, &base), "MPI_Win_shared_query");
  data_ = static_cast<std::byte*>(base);
  size_ = static_cast<std::uint64_t>(size);
  fence();
}

SharedWindow::~SharedWindow() {
  if (win_ != MPI_WIN_NULL) MPI_Win_free(&win_);
}

void SharedWindow::fence() {
  check(MPI_Win_fence(0, win_), "MPI_Win_fence");
}

void broadcast(MPI_Comm comm, int root, std::byte* data, std::uint64_t bytes) {
  for (std::uint64_t done = 0; done < bytes;) {
    const int count = piece_count(bytes, done);
    check(MPI_Bcast(data + done, count, MPI_BYTE, root, comm), "MPI_Bcast of B");
    done += static_cast<std::uint64_t>(count);
  }
}

std::string broadcast_string(MPI_Comm comm, std::string s, int root) {
  unsigned long long length = s.size();
  check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, root, comm), "MPI_Bcast");
  s.resize(length);
  check(MPI_Bcast(s.data(), static_cast<int>(length), MPI_CHAR, root, comm), "MPI_Bcast");
  return s;
}

}  // namespace shmgemm::mpi
