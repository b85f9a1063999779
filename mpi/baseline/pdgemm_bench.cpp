// shmgemm-pdgemm: the ScaLAPACK baseline of `shmgemm bench --mpi`. The same job as shmgemm-mpi
// (C = A·B from two .npy files into a .npy file) done the 2-D way: A, B and C block-cyclic on a
// Pr x Pc process grid, read and written with MPI-IO through darray views, multiplied by pdgemm.
//   mpirun -n P shmgemm-pdgemm A.npy B.npy -o C.npy [--nb 128] [--json]
// float64, 2-D, C order. A C-order m x k array is the Fortran-order k x m array A^T, so the
// program computes C^T = B^T·A^T on the Fortran views of the files: no transposition anywhere.
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "common/npy.hpp"
#include "common/npy_file.hpp"
#include "mpi/agree.hpp"
#include "mpi/temp_output.hpp"
#include "mpi/topology.hpp"
#include "worker/slice_kernel.hpp"

extern "C" {
void Cblacs_get(int context, int what, int* value);
void Cblacs_gridinit(int* context, const char* order, int rows, int cols);
void Cblacs_gridinfo(int context, int* rows, int* cols, int* row, int* col);
void Cblacs_gridexit(int context);
int numroc_(const int* n, const int* nb, const int* iproc, const int* isrcproc, const int* nprocs);
void descinit_(int* desc, const int* m, const int* n, const int* mb, const int* nb,
               const int* irsrc, const int* icsrc, const int* context, const int* lld, int* info);
void pdgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
             const double* alpha, const double* a, const int* ia, const int* ja, const int* desca,
             const double* b, const int* ib, const int* jb, const int* descb, const double* beta,
             double* c, const int* ic, const int* jc, const int* descc);
}

namespace {

using namespace shmgemm;
using namespace shmgemm::mpi;
using Clock = std::chrono::steady_clock;

// The most square grid rows x cols = p with rows <= cols.
std::pair<int, int> grid_for(int p) {
  int rows = static_cast<int>(std::sqrt(double(p)));
  while (p % rows != 0)
    --rows;
  return {rows, p / rows};
}

// A Fortran-order rows x cols float64 array, block-cyclic on the grid (ScaLAPACK's layout).
struct Distributed {
  int rows = 0, cols = 0, local_rows = 0, local_cols = 0;
  int desc[9] = {};
  std::vector<double> local;
  Datatype file_type;  // this rank's elements of the file, in local (column-major) order
};

Distributed distribute(int rows, int cols, int nb, int context, int grid_rows, int grid_cols,
                       int my_row, int my_col, int rank, int size) {
  Distributed d;
  d.rows = rows;
  d.cols = cols;
  const int zero = 0;
  d.local_rows = numroc_(&rows, &nb, &my_row, &zero, &grid_rows);
  d.local_cols = numroc_(&cols, &nb, &my_col, &zero, &grid_cols);
  const int lld = std::max(1, d.local_rows);
  int info = 0;
  descinit_(d.desc, &rows, &cols, &nb, &nb, &zero, &zero, &context, &lld, &info);
  if (info != 0) throw Error(ErrorCode::internal, fmt::format("descinit_: info {}", info));
  d.local.resize(std::size_t(d.local_rows) * std::size_t(d.local_cols));
  const int gsizes[2] = {rows, cols};
  const int distribs[2] = {MPI_DISTRIBUTE_CYCLIC, MPI_DISTRIBUTE_CYCLIC};
  const int dargs[2] = {nb, nb};
  const int psizes[2] = {grid_rows, grid_cols};
  MPI_Datatype t = MPI_DATATYPE_NULL;
  check(MPI_Type_create_darray(size, rank, 2, gsizes, distribs, dargs, psizes, MPI_ORDER_FORTRAN,
                               MPI_DOUBLE, &t),
        "MPI_Type_create_darray");
  d.file_type = Datatype(t);
  return d;
}

void read_distributed(const std::string& path, std::uint64_t offset, Distributed& d) {
  File f(MPI_COMM_WORLD, path, MPI_MODE_RDONLY, ErrorCode::bad_file);
  f.set_view(offset, d.file_type.get(), MPI_DOUBLE);
  MPI_Status status;
  check(MPI_File_read_all(f.get(), d.local.data(), static_cast<int>(d.local.size()), MPI_DOUBLE,
                          &status),
        path);
  f.close();
}

struct Args {
  std::string a, b, out;
  int nb = 128;
  bool json = false;
};

int run(const Args& args, int rank, int size) {
  const auto start = Clock::now();
  const Topology topo = make_topology(false);
  NpyHeader ha, hb;
  on_all_ranks(MPI_COMM_WORLD, [&] {
    const NpyMapping a = NpyMapping::open(args.a), b = NpyMapping::open(args.b);
    ha = a.header();
    hb = b.header();
    for (const NpyMapping* f : {&a, &b})
      if (f->header().dtype != DType::float64 || f->header().shape.size() != 2 ||
          f->header().fortran_order)
        throw Error(ErrorCode::unsupported,
                    fmt::format("{}: shmgemm-pdgemm takes 2-D C-order float64 arrays", f->path()));
    if (ha.shape[1] != hb.shape[0])
      throw Error(ErrorCode::shape_mismatch,
                  fmt::format("shapes {} and {} not aligned", shape_string(ha.shape),
                              shape_string(hb.shape)));
    check_output_path(args.out);
  });
  const int m = int(ha.shape[0]), k = int(ha.shape[1]), n = int(hb.shape[1]);
  const auto [grid_rows, grid_cols] = grid_for(size);
  int context = 0;
  Cblacs_get(-1, 0, &context);
  Cblacs_gridinit(&context, "Row", grid_rows, grid_cols);
  int gr = 0, gc = 0, my_row = 0, my_col = 0;
  Cblacs_gridinfo(context, &gr, &gc, &my_row, &my_col);
  // The BLAS threads follow the cores this rank owns, as in shmgemm-mpi.
  set_blas_threads(int(topo.cores[std::size_t(rank)]));

  // C^T (n x m) = B^T (n x k) · A^T (k x m), all Fortran views of the C-order files.
  Distributed bt = distribute(n, k, args.nb, context, gr, gc, my_row, my_col, rank, size);
  Distributed at = distribute(k, m, args.nb, context, gr, gc, my_row, my_col, rank, size);
  Distributed ct = distribute(n, m, args.nb, context, gr, gc, my_row, my_col, rank, size);
  auto t = Clock::now();
  on_all_ranks(MPI_COMM_WORLD, [&] {
    read_distributed(args.b, hb.data_offset, bt);
    read_distributed(args.a, ha.data_offset, at);
  });
  const double read_seconds = seconds_since(t);

  MPI_Barrier(MPI_COMM_WORLD);
  t = Clock::now();
  const int one = 1;
  const double alpha = 1, beta = 0;
  pdgemm_("N", "N", &n, &m, &k, &alpha, bt.local.data(), &one, &one, bt.desc, at.local.data(), &one,
          &one, at.desc, &beta, ct.local.data(), &one, &one, ct.desc);
  MPI_Barrier(MPI_COMM_WORLD);
  const double compute_seconds = seconds_since(t);
  bt.local = {};
  at.local = {};

  // C: rank 0's header, everyone's blocks through the darray view, renamed when complete.
  t = Clock::now();
  const std::uint64_t shape[2] = {std::uint64_t(m), std::uint64_t(n)};
  const std::string header = format_npy_header(DType::float64, shape);
  TempOutput temp(MPI_COMM_WORLD, args.out);
  on_all_ranks(MPI_COMM_WORLD, [&] {
    File f(MPI_COMM_WORLD, temp.path(), MPI_MODE_CREATE | MPI_MODE_EXCL | MPI_MODE_WRONLY,
           ErrorCode::resource);
    MPI_Status status;
    if (rank == 0)
      check(MPI_File_write_at(f.get(), 0, header.data(), int(header.size()), MPI_BYTE, &status),
            temp.path());
    f.set_view(header.size(), ct.file_type.get(), MPI_DOUBLE);
    check(MPI_File_write_all(f.get(), ct.local.data(), int(ct.local.size()), MPI_DOUBLE, &status),
          temp.path());
    f.close();
  });
  // Every rank wrote its blocks: rank 0 puts the file in place.
  on_all_ranks(MPI_COMM_WORLD, [&] { temp.commit(); });
  const double write_seconds = seconds_since(t);
  const double seconds = seconds_since(start);
  Cblacs_gridexit(context);

  if (rank == 0) {
    // SUMMA's traffic: every block of B^T goes to the grid_cols - 1 other ranks of its grid row,
    // every block of A^T to the grid_rows - 1 other ranks of its grid column.
    const double moved = 8.0 * (double(n) * k * (gc - 1) + double(k) * m * (gr - 1));
    const nlohmann::json j = {{"output", args.out},
                              {"m", m},
                              {"k", k},
                              {"n", n},
                              {"dtype", "float64"},
                              {"ranks", size},
                              {"grid", {gr, gc}},
                              {"nb", args.nb},
                              {"threads_per_rank", topo.cores[0]},
                              {"seconds", seconds},
                              {"compute_seconds", compute_seconds},
                              {"read_seconds", read_seconds},
                              {"write_seconds", write_seconds},
                              {"gflops", 2.0 * m * double(n) * k / seconds / 1e9},
                              {"summa_bytes_between_ranks", moved}};
    if (args.json)
      fmt::print("{}\n", j.dump());
    else
      fmt::print(
          "{}: ({},{}) = ({},{}) @ ({},{}) by pdgemm on a {}x{} grid, nb {}: {:.3f} s, "
          "pdgemm {:.3f} s\n",
          args.out, m, n, m, k, k, n, gr, gc, args.nb, seconds, compute_seconds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Session session(argc, argv);
  CLI::App app{
      "shmgemm-pdgemm: C = A·B by ScaLAPACK's pdgemm (the baseline of shmgemm bench --mpi)",
      "shmgemm-pdgemm"};
  Args args;
  app.add_option("A", args.a, "left operand (m, k), float64, C order")->required();
  app.add_option("B", args.b, "right operand (k, n), float64, C order")->required();
  app.add_option("-o,--output", args.out, "where to write C")->required();
  app.add_option("--nb", args.nb, "block size of the block-cyclic layout")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_flag("--json", args.json, "print one JSON object with the run's figures");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (session.rank() == 0) return app.exit(e);
    return e.get_exit_code();
  }
  try {
    return run(args, session.rank(), session.size());
  } catch (const RankFailure& e) {
    if (session.rank() == 0) fmt::print(stderr, "shmgemm-pdgemm: {}\n", e.what());
    return 1;
  }
}
