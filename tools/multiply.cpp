#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "tools/commands.hpp"
#include "tools/measure.hpp"

namespace shmgemm::cli {
namespace {

struct MultiplyArgs {
  std::string a, b, out;
  Options options;
  bool json = false;
  bool explain = false;
  bool mpi = false;  // --launch mpi
  std::string hostfile;
  const CLI::App* cmd = nullptr;
};

// --launch mpi: becomes `mpirun -n W shmgemm-mpi multiply ...` (this process is replaced).
int run_multiply_mpi(const MultiplyArgs& args) {
  for (const char* option : {"--backing", "--inputs", "--rows-per-step", "--retries",
                             "--in-process", "--fsync", "--timeout"})
    if (args.cmd->count(option) > 0)
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("--launch mpi: {} does not apply (shmgemm-mpi's ranks read their "
                              "rows of A and write their rows of C with MPI-IO)",
                              option));
  const unsigned ranks = args.options.workers > 0 ? args.options.workers : available_cores();
  std::vector<std::string> argv = mpirun_command(ranks, args.hostfile, "--launch mpi");
  const std::filesystem::path self = self_executable();
  const std::string program = (self.parent_path() / "shmgemm-mpi").string();
  if (::access(program.c_str(), X_OK) != 0)
    throw Error(ErrorCode::invalid_argument,
                fmt::format("--launch mpi: {} not found (it is built where Open MPI is "
                            "installed; tools/install-deps.sh installs it)",
                            program));
  argv.insert(argv.end(), {program, "multiply", args.a, args.b, "-o", args.out});
  if (args.options.threads_per_worker > 0)
    argv.insert(argv.end(), {"--threads", std::to_string(args.options.threads_per_worker)});
  if (args.json) argv.push_back("--json");
  if (args.explain) argv.push_back("--explain");
  std::vector<char*> c_argv;
  for (std::string& s : argv)
    c_argv.push_back(s.data());
  c_argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(argv[0].c_str(), c_argv.data());
  throw Error(ErrorCode::resource,
              fmt::format("--launch mpi: cannot run {}: {}", argv[0], std::strerror(errno)));
}

nlohmann::json plan_json(const Report& r) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const PlanCandidate& c : r.candidates)
    candidates.push_back({{"workers", c.workers},
                          {"threads", c.threads},
                          {"predicted_seconds", c.predicted_seconds}});
  return {{"automatic", r.automatic},
          {"reason", r.plan_reason},
          {"calibration", r.calibration},
          {"candidates", candidates}};
}

int run_multiply(const MultiplyArgs& args) {
  if (args.mpi) return run_multiply_mpi(args);
  if (!args.hostfile.empty())
    throw Error(ErrorCode::invalid_argument, "--hostfile: only with --launch mpi");
  const Report r = multiply_npy(args.a, args.b, args.out, args.options);
  // With --json, stdout holds only the JSON object: the explanation goes to stderr.
  if (args.explain) fmt::print(args.json ? stderr : stdout, "{}", explain(r));
  if (args.json) {
    nlohmann::json j = {{"output", args.out},
                        {"m", r.m},
                        {"k", r.k},
                        {"n", r.n},
                        {"batch", r.batch},
                        {"dtype", r.dtype},
                        {"workers", r.workers},
                        {"threads_per_worker", r.threads_per_worker},
                        {"launch", r.in_process ? "none" : to_string(r.launch)},
                        {"backing", to_string(r.backing)},
                        {"in_process", r.in_process},
                        {"seconds", r.seconds},
                        {"compute_seconds", r.compute_seconds},
                        {"gflops", r.gflops()},
                        {"retries", r.retries},
                        {"rows_per_step", r.rows_per_step},
                        {"prepared_bytes", r.prepared_bytes},
                        {"limb_products", r.limb_products},
                        {"plan", plan_json(r)}};
    fmt::print("{}\n", j.dump());
    return 0;
  }
  const std::string how =
      r.in_process ? fmt::format("in process, {}", plural(r.threads_per_worker, "OpenBLAS thread"))
                   : fmt::format("{} x {}, {}, {}", plural(r.workers, "worker"),
                                 plural(r.threads_per_worker, "thread"), to_string(r.launch),
                                 to_string(r.backing));
  const std::string products = r.batch == 1 ? "" : fmt::format("{} x ", r.batch);
  fmt::print("{}: {}({},{}) {} = ({},{}) @ ({},{}) in {:.3f} s ({:.1f} GFLOP/s; {})\n", args.out,
             products, r.m, r.n, r.dtype, r.m, r.k, r.k, r.n, r.seconds, r.gflops(), how);
  return 0;
}

}  // namespace

void add_multiply(CLI::App& app, Action& action) {
  auto args = std::make_shared<MultiplyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "multiply",
      "Compute C = np.matmul(A, B) for two .npy files (C or Fortran order) and write C as "
      "a C-order .npy: numpy's result dtype, shape and, for integers, bits (wrapping modulo "
      "2^bits as numpy does). Dtypes: int8..int64, uint8..uint64, float32, float64, "
      "complex64, complex128, mixed by numpy's promotion. Shapes: 2-D matrices; a 1-D A is a "
      "row and a 1-D B a column (removed from C); N-D operands are stacks of matrices whose "
      "leading axes broadcast. The output is written under a temporary name and renamed when "
      "complete, so a failed run never leaves a partial file.");
  cmd->add_option("A", args->a, "left operand: (..., m, k), or (k,)")->required();
  cmd->add_option("B", args->b, "right operand: (..., k, n), or (k,)")->required();
  cmd->add_option("-o,--output", args->out, "where to write C ((..., m, n) .npy)")->required();
  add_engine_options(*cmd, args->options, &args->mpi);
  cmd->add_option("--hostfile", args->hostfile,
                  "with --launch mpi: mpirun's hostfile (the nodes and their slots); "
                  "--workers ranks are placed on them");
  args->cmd = cmd;
  cmd->add_flag("--in-process", args->options.in_process,
                "no workers: one OpenBLAS call in this process (the single-process reference)");
  cmd->add_flag("--fsync", args->options.fsync,
                "write C to disk (fdatasync) before renaming it into place, and the folder after: "
                "after a power loss the output is the old file or the whole new one (costs the "
                "time the disk takes to write C; without it the kernel writes C back later)");
  cmd->add_flag("--json", args->json, "print one JSON object with the run's figures on stdout");
  cmd->add_flag("--explain", args->explain,
                "say which plan was chosen and why (the cost model's predictions)");
  // A progress bar only where someone watches it.
  args->options.progress = ::isatty(2) != 0;
  cmd->callback([args, &action] { action = [args] { return run_multiply(*args); }; });
}

}  // namespace shmgemm::cli
