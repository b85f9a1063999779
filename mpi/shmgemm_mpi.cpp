// shmgemm-mpi: the row-sliced product across the ranks of an MPI job.
//   mpirun -n P shmgemm-mpi multiply A.npy B.npy -o C.npy
// Every rank parses the same arguments; rank 0 alone prints (help, errors, the report).
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "mpi/agree.hpp"
#include "mpi/mpi_product.hpp"
#include "mpi/temp_output.hpp"
#include "worker/blas_core.hpp"

namespace {

using namespace shmgemm;
using namespace shmgemm::mpi;

struct Args {
  std::string a, b, out;
  MpiOptions options;
  bool one_rank_per_node = false;
  bool json = false;
  bool explain = false;
};

// mpirun passes SIGTERM (and SIGINT) on to the ranks when it aborts the job: remove the
// temporary output, then die of the signal as before.
extern "C" void on_signal(int sig) {
  remove_temp_output();
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}

std::string_view to_string(BFrom f) {
  return f == BFrom::broadcast ? "broadcast"
         : f == BFrom::map     ? "map"
         : f == BFrom::panel   ? "panel"
                               : "path";
}

nlohmann::json mpi_report_json(const Args& args, const MpiReport& r) {
  nlohmann::json ranks = nlohmann::json::array();
  for (std::size_t i = 0; i < r.parts.size(); ++i) {
    const RankPart& p = r.parts[i];
    ranks.push_back({{"rank", i},
                     {"node", p.node},
                     {"host", p.host},
                     {"rows", {p.rows.begin, p.rows.end}},
                     {"cols", {p.cols.begin, p.cols.end}},
                     {"threads", p.threads},
                     {"predicted_seconds", p.predicted_seconds}});
  }
  const Phases& ph = r.phases;
  // The report every product gives, then MPI's own.
  nlohmann::json j = report_json(r.base);
  j["output"] = args.out;
  j["launch"] = "mpi";
  j["mpi"] = {{"ranks", r.ranks},
              {"nodes", r.nodes},
              {"one_rank_per_node", r.one_rank_per_node},
              {"b_from", to_string(r.b_from)},
              {"a_from", r.a_mapped ? "map" : "read"},
              {"c_to", r.c_mapped ? "map" : "mpi-io"},
              {"b_bytes", r.b_bytes},
              {"b_bytes_between_nodes", r.b_bytes_between_nodes},
              {"b_bytes_read", r.b_bytes_read},
              {"grid", {r.grid.rows, r.grid.cols}},
              {"memory_per_rank", r.grid.memory_per_rank},
              {"memory_per_rank_allowed", r.memory_per_rank},
              {"bytes_read_planned", r.grid.bytes_read},
              {"phases",
               {{"validate", ph.validate},
                {"open_output", ph.open_output},
                {"read_b", ph.read_b},
                {"read_a", ph.read_a},
                {"compute", ph.compute},
                {"write_c", ph.write_c}}},
              {"per_rank", ranks}};
  return j;
}

std::string explain(const MpiReport& r) {
  std::string s = fmt::format("plan: {}\n", r.base.plan_reason);
  for (std::size_t i = 0; i < r.parts.size(); ++i) {
    const RankPart& p = r.parts[i];
    s += fmt::format(
        "  rank {} (node {}, {}): rows {}-{}{} with {}, predicted {}\n", i, p.node, p.host,
        p.rows.begin, p.rows.end,
        r.grid.cols > 1 ? fmt::format(", columns {}-{}", p.cols.begin, p.cols.end) : std::string(),
        detail::count(p.threads, "thread"), detail::duration_string(p.predicted_seconds));
  }
  if (r.grid.cols > 1) {
    s += fmt::format(
        "B: every rank reads its column panel ({} of B's {}); a rank holds {}, and the ranks "
        "read {} of A and B in all\n",
        bytes_string(r.b_bytes / r.grid.cols), bytes_string(r.b_bytes),
        bytes_string(r.grid.memory_per_rank), bytes_string(r.grid.bytes_read));
    s += "C: every rank writes its block with collective MPI-IO\n";
    return s;
  }
  s += fmt::format(
      "B ({} bytes) reaches {} by {}\n", r.b_bytes, detail::count(unsigned(r.nodes), "node"),
      r.b_from == BFrom::broadcast
          ? "one read (each of the first node's ranks a part) and MPI_Bcast between node leaders"
      : r.b_from == BFrom::map ? "a mapping of its file (one copy, in the node's page cache)"
                               : "a read by every node (each of its ranks a part)");
  s += r.c_mapped ? "C: every rank writes its rows in place, in a mapping of the output\n"
                  : "C: every rank computes its rows in its memory, then collective MPI-IO\n";
  return s;
}

int run(const Args& args, int rank) {
  const Topology topo = make_topology(args.one_rank_per_node);
  const MpiReport r = multiply_mpi(topo, args.a, args.b, args.out, args.options);
  if (rank != 0) return 0;
  if (args.explain) fmt::print(args.json ? stderr : stdout, "{}", explain(r));
  if (args.json) {
    fmt::print("{}\n", mpi_report_json(args, r).dump());
  } else {
    fmt::print(
        "{}: ({},{}) {} = ({},{}) @ ({},{}) in {:.3f} s ({:.1f} GFLOP/s; {} on {}, "
        "{} per rank)\n",
        args.out, r.base.m, r.base.n, r.base.dtype, r.base.m, r.base.k, r.base.k, r.base.n,
        r.base.seconds, r.base.gflops(), detail::count(unsigned(r.ranks), "rank"),
        detail::count(unsigned(r.nodes), "node"),
        detail::count(r.parts.empty() ? 0 : r.parts[0].threads, "thread"));
  }
  std::fflush(stdout);
  return 0;
}

// shmgemm-mpi --plan-only: the model at scale, printed without MPI (no mpirun needed).
int plan_only(int argc, char** argv) {
  CLI::App app{
      "shmgemm-mpi --plan-only: the decomposition's model at scale, computed without running "
      "anything: for each node count, the bytes a rank holds and the bytes that reach the ranks "
      "in all, for the row decomposition, the grid shmgemm-mpi would choose within "
      "--memory-per-rank, SUMMA, 2.5-D, and the lower bound on the bytes moved. A Markdown "
      "table.",
      "shmgemm-mpi"};
  bool plan = false;
  app.add_flag("--plan-only", plan, "print the model; run nothing")->required();
  std::string shape;
  app.add_option("--shape", shape, "the product: MxKxN (A is m x k, B k x n)")->required();
  std::vector<unsigned> nodes = {2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  app.add_option("--nodes", nodes, "node counts, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  unsigned ranks_per_node = 1;
  app.add_option("--ranks-per-node", ranks_per_node, "ranks on each node")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  std::uint64_t memory_per_rank = std::uint64_t{4} << 30;
  app.add_option("--memory-per-rank", memory_per_rank, "bytes a rank may hold (512M, 16G...)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("4G");
  std::string dtype = "float64";
  app.add_option("--dtype", dtype, "the operands' and the result's dtype")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::uint64_t m = 0, k = 0, n = 0;
  char x1 = 0, x2 = 0, extra = 0;
  if (std::sscanf(shape.c_str(), "%lu%c%lu%c%lu%c", &m, &x1, &k, &x2, &n, &extra) != 5 ||
      x1 != 'x' || x2 != 'x') {
    fmt::print(stderr, "shmgemm-mpi: --shape {}: expected MxKxN, such as 100000x100000x100000\n",
               shape);
    return 2;
  }
  const std::optional<DType> d = dtype_from_name(dtype);
  if (!d) {
    fmt::print(stderr, "shmgemm-mpi: --dtype {}: not a dtype shmgemm takes\n", dtype);
    return 2;
  }
  const std::size_t item = item_size(*d);
  fmt::print(
      "{} x {} @ {} x {} {}, {} rank{} a node, {} a rank at most:\n\n{}", m, k, k, n, dtype,
      ranks_per_node, ranks_per_node == 1 ? "" : "s", bytes_string(memory_per_rank),
      scaling_table({m, k, n, item, item, item, 1, 1}, nodes, ranks_per_node, memory_per_rank));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--plan-only") return plan_only(argc, argv);
  // Before MPI starts its threads: the kernels this CPU calls for, where OpenBLAS fell back.
  detail::use_worker_kernels();
  // A rank whose launcher dies (mpirun killed, even by SIGKILL) gets SIGTERM, whose handler
  // removes the temporary output: no rank runs on to write an output nobody waits for.
  const pid_t launcher = ::getppid();
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher) return 1;
  std::optional<Session> session;
  try {
    session.emplace(argc, argv);
  } catch (const Error& e) {
    fmt::print(stderr, "shmgemm-mpi: {}\n", e.what());
    return 1;
  }
  const int rank = session->rank();

  CLI::App app{
      "shmgemm-mpi: C = A·B across the ranks of an MPI job, row-sliced as shmgemm does on one\n"
      "machine. Launch it with mpirun: `mpirun -n P shmgemm-mpi multiply A.npy B.npy -o C.npy`.\n"
      "Each rank computes a contiguous block of rows of C with OpenBLAS; the ranks of a node\n"
      "share one copy of B (an MPI-3 shared-memory window); each rank reads only its rows of A\n"
      "and writes its rows of C with collective MPI-IO. A, B and C's paths must be the same on\n"
      "every node (a shared file system). Where B does not fit, the ranks form a grid of row\n"
      "and column panels. `shmgemm-mpi --plan-only --shape MxKxN ...` prints the model at scale\n"
      "without running anything (see --plan-only --help).",
      "shmgemm-mpi"};
  app.require_subcommand(1);
  Args args;
  CLI::App* cmd = app.add_subcommand(
      "multiply",
      "Compute C = A @ B for two .npy files (2-D, or 1-D as np.matmul takes them; any dtypes "
      "`shmgemm multiply` takes, mixed by numpy's promotion, integers exact; C or Fortran order) "
      "and write C as a C-order .npy under a temporary name, renamed when every rank has "
      "succeeded.");
  cmd->add_option("A", args.a, "left operand: (m, k), or (k,)")->required();
  cmd->add_option("B", args.b, "right operand: (k, n), or (k,)")->required();
  cmd->add_option("-o,--output", args.out, "where to write C ((m, n) .npy)")->required();
  cmd->add_option("-t,--threads", args.options.threads,
                  "OpenBLAS threads per rank (default: the cores the rank owns: its CPU "
                  "affinity, shared with the other ranks of its host)")
      ->check(CLI::Range(1u, 1024u));
  cmd->add_flag("--one-rank-per-node", args.one_rank_per_node,
                "treat every rank as its own node: each keeps its own copy of B, which travels "
                "between ranks as between nodes (to test and measure that path on one machine)");
  cmd->add_option_function<std::string>(
         "--b-from",
         [&args](const std::string& v) {
           args.options.b_from = v == "path"  ? BFrom::path
                                 : v == "map" ? BFrom::map
                                              : BFrom::broadcast;
         },
         "broadcast: the first node's ranks read a part of B each and its leader MPI_Bcasts it "
         "to the other nodes' leaders; path: every node's ranks read a part of B each from its "
         "path; map: every rank maps the file (ranks on one node only)")
      ->check(CLI::IsMember({"broadcast", "path", "map"}))
      ->default_str("map on one node, else broadcast");
  cmd->add_flag("--mpi-io", args.options.mpi_io,
                "on one node too, B in a window and C by collective MPI-IO, as across nodes (by "
                "default the ranks of one node map B and write C in place, as the engine does)");
  cmd->add_option_function<std::string>(
         "--a-from",
         [&args](const std::string& v) {
           args.options.a_from = v == "read" ? AFrom::read : AFrom::map;
         },
         "map: each rank maps A's file and touches only its rows (C order; Fortran-order rows "
         "are strided and always read); read: each rank reads its rows with MPI-IO, for file "
         "systems where mapping is slow")
      ->check(CLI::IsMember({"map", "read"}))
      ->default_str("map");
  cmd->add_option_function<std::string>(
         "--grid",
         [&args](const std::string& v) {
           unsigned rows = 0, cols = 0;
           char x = 0, extra = 0;
           if (std::sscanf(v.c_str(), "%u%c%u%c", &rows, &x, &cols, &extra) != 3 || x != 'x' ||
               rows == 0 || cols == 0)
             throw CLI::ValidationError("--grid", "expected ROWSxCOLS, such as 3x2, got " + v);
           args.options.grid_rows = rows;
           args.options.grid_cols = cols;
         },
         "the ranks as a ROWS x COLS grid: each computes a block of C from a row panel of A and "
         "a column panel of B, read from the files (ROWS x COLS = the ranks; COLS 1: rows only, "
         "B once per node)")
      ->option_text("ROWSxCOLS")
      ->default_str("of the grids that fit --memory-per-rank, the one that moves the fewest bytes");
  cmd->add_option("--memory-per-rank", args.options.memory_per_rank,
                  "bytes a rank may hold (512M, 2G...), which chooses the grid")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("its node's available memory (or memory cgroup's) over its ranks");
  cmd->add_option("--timeout", args.options.timeout,
                  "end the job after this many seconds, naming the step it was in, the output "
                  "left as it was (default: no limit)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lost-after", args.options.lost_after,
                  "a rank that sends no heartbeat for this many seconds is lost (its node down "
                  "or unreachable): the job ends naming it and its node, and a rank cut off "
                  "from rank 0 ends itself")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--json", args.json, "print one JSON object with the run's figures on stdout");
  cmd->add_flag("--explain", args.explain, "say how rows, threads and B were placed");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return rank == 0 ? app.exit(e) : 0;
  } catch (const CLI::CallForAllHelp& e) {
    return rank == 0 ? app.exit(e) : 0;
  } catch (const CLI::ParseError& e) {
    if (rank == 0) fmt::print(stderr, "shmgemm-mpi: {}\n", e.what());
    return 2;
  }
  for (int sig : {SIGTERM, SIGINT, SIGHUP})
    std::signal(sig, on_signal);

  try {
    return run(args, rank);
  } catch (const RankFailure& e) {
    // Every rank holds the same failure; rank 0 says it once.
    if (rank == 0) {
      if (e.rank() == 0)
        fmt::print(stderr, "shmgemm-mpi: {}\n", e.what());
      else
        fmt::print(stderr, "shmgemm-mpi: rank {}: {}\n", e.rank(), e.what());
    }
    return 1;
  } catch (const std::exception& e) {
    // A failure outside the agreed steps: this rank alone knows it; end the whole job.
    fmt::print(stderr, "shmgemm-mpi: rank {}: {}\n", rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
