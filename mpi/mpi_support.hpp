// Move-only RAII handles for MPI's objects (the session, communicators, datatypes, files,
// shared-memory windows) and one way to turn MPI's error codes into Error. MPI calls here return
// their errors (MPI_ERRORS_RETURN); nothing aborts the job behind the caller's back.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "shmgemm/error.hpp"

namespace shmgemm::mpi {

// Throws Error(code) "what: MPI's message" unless rc is MPI_SUCCESS.
void check(int rc, std::string_view what, ErrorCode code = ErrorCode::resource);

// MPI_Init_thread ... MPI_Finalize, with MPI_ERRORS_RETURN on MPI_COMM_WORLD.
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  int rank_ = 0, size_ = 1;
};

// An MPI handle this program made: freed (Traits::free) on destruction, movable, or
// Traits::null().
template <class T, class Traits>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T h) : h_(h) {}
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, Traits::null())) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, Traits::null());
    }
    return *this;
  }
  ~Handle() { reset(); }
  T get() const { return h_; }
  bool null() const { return h_ == Traits::null(); }

 private:
  void reset() noexcept {
    if (h_ != Traits::null()) Traits::free(&h_);
    h_ = Traits::null();
  }
  T h_ = Traits::null();
};

struct CommTraits {
  static MPI_Comm null() { return MPI_COMM_NULL; }
  static void free(MPI_Comm* c) { MPI_Comm_free(c); }
};
struct DatatypeTraits {
  static MPI_Datatype null() { return MPI_DATATYPE_NULL; }
  static void free(MPI_Datatype* t) { MPI_Type_free(t); }
};

// A communicator this program made, or MPI_COMM_NULL.
class Comm : public Handle<MPI_Comm, CommTraits> {
 public:
  using Handle::Handle;
  int rank() const;
  int size() const;
};

// A committed derived datatype.
class Datatype : public Handle<MPI_Datatype, DatatypeTraits> {
 public:
  Datatype() = default;
  explicit Datatype(MPI_Datatype t);  // commits t
};

// The rows [row_begin, row_end) of a 2-D array of rows x cols elements of `item` bytes, stored
// in C order or Fortran order, as an MPI file type of bytes. Read through a view, the rows arrive
// in the file's order: row-major (ld = cols) for C order, column-major (ld = rows in the block)
// for Fortran order.
Datatype row_block_type(std::uint64_t rows, std::uint64_t cols, std::size_t item, bool fortran,
                        std::uint64_t row_begin, std::uint64_t row_end);
// The block of rows [row_begin, row_end) and columns [col_begin, col_end) of such an array,
// likewise: it arrives row-major (ld = its columns) for C order, column-major (ld = its rows)
// for Fortran order.
Datatype block_type(std::uint64_t rows, std::uint64_t cols, std::size_t item, bool fortran,
                    std::uint64_t row_begin, std::uint64_t row_end, std::uint64_t col_begin,
                    std::uint64_t col_end);

// An MPI file opened collectively on `comm`; closed collectively on destruction (every rank of
// `comm` must destroy it at the same step, as they do when they unwind together).
class File {
 public:
  File(MPI_Comm comm, const std::string& path, int amode, ErrorCode code);
  File(File&& o) noexcept : f_(o.f_), path_(std::move(o.path_)) { o.f_ = MPI_FILE_NULL; }
  File& operator=(File&&) = delete;
  ~File();
  MPI_File get() const { return f_; }
  const std::string& path() const { return path_; }
  // Collective close; throws Error naming the file.
  void close();
  // Collective: the file as seen from byte `offset` on, `filetype` (made of `etype`) repeated.
  void set_view(std::uint64_t offset, MPI_Datatype filetype = MPI_BYTE,
                MPI_Datatype etype = MPI_BYTE);

  // Reads `bytes` through the file's view into `to` with MPI_File_read_all, in pieces that
  // MPI's int counts can hold. Collective on `comm`: ranks may ask for different byte counts
  // (0 included); they make the same number of calls.
  void read_all(MPI_Comm comm, std::byte* to, std::uint64_t bytes);
  // Writes `bytes` from `from` through the file's view with MPI_File_write_all, likewise.
  void write_all(MPI_Comm comm, const std::byte* from, std::uint64_t bytes);
  // Writes `bytes` from `from` at byte `offset` with MPI_File_write_at_all, likewise in pieces.
  void write_at_all(MPI_Comm comm, std::uint64_t offset, const std::byte* from,
                    std::uint64_t bytes);

 private:
  MPI_File f_ = MPI_FILE_NULL;
  std::string path_;
};

// Bytes that every rank of a node maps: allocated by the node's rank 0 with
// MPI_Win_allocate_shared (the others allocate nothing and find rank 0's memory with
// MPI_Win_shared_query). Freed collectively on destruction.
class SharedWindow {
 public:
  SharedWindow(MPI_Comm node, std::uint64_t bytes);
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;
  ~SharedWindow();
  std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }
  // Makes the node rank 0's stores visible to every rank of the node (MPI_Win_fence).
  void fence();

 private:
  MPI_Win win_ = MPI_WIN_NULL;
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

// Largest piece moved by one MPI call: int counts of bytes, kept well below 2^31.
inline constexpr std::uint64_t kMaxPieceBytes = std::uint64_t{1} << 30;

// MPI_Bcast of `bytes` from `root` of `comm`, in pieces.
void broadcast(MPI_Comm comm, int root, std::byte* data, std::uint64_t bytes);

// `s` of rank `root`, on every rank of `comm` (the others pass anything).
std::string broadcast_string(MPI_Comm comm, std::string s, int root);

}  // namespace shmgemm::mpi
