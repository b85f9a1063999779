#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/fd.hpp"
#include "common/mapping.hpp"
#include "common/npy.hpp"
#include "engine/interrupt.hpp"
#include "engine/launcher.hpp"
#include "engine/plan.hpp"
#include "engine/tooling.hpp"
#include "tools/bench/measure.hpp"
#include "tools/cli/commands.hpp"

namespace shmgemm::cli {
namespace {

struct MultiplyArgs {
  std::string a, b, out;
  FileOptions options;
  bool json = false;
  bool explain = false;
  bool mpi = false;  // --launch mpi
  std::string hostfile;
  const CLI::App* cmd = nullptr;
};

// Runs mpirun as a child and answers for it: its output passes through; a failure is one
// line (shmgemm-mpi's own, or mpirun's first words when it failed before any rank could say
// anything); an interrupt of this process kills mpirun, whose ranks then get SIGTERM (their
// parent-death signal) and remove the temporary output, and exits 128 + signal.
int supervise_mpirun(const std::vector<std::string>& argv) {
  const Fd err_file = memory_file("shmgemm-mpirun-stderr", 0, "a file for mpirun's errors");
  detail::Command command{argv[0], {argv.begin() + 1, argv.end()}, {}};
  command.stderr_fd = err_file.get();
  std::fflush(nullptr);
  const detail::StopScope interrupts;
  const int code = detail::Process::spawn(command, argv[0]).join();
  const std::string err = file_contents(err_file);
  // shmgemm-mpi's own lines pass through as they are; mpirun's chatter only when it is all
  // there is, as one line.
  // mpirun's own messages come in blocks between lines of dashes: the first block, one line.
  std::string ours, first_other;
  bool in_first_block = true;
  std::istringstream lines(err);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("shmgemm-mpi: ", 0) == 0) {
      ours += line + "\n";
      continue;
    }
    const std::size_t text = line.find_first_not_of(" \t");
    const bool rule = text != std::string::npos && line.find_first_not_of('-') == std::string::npos;
    if (rule && !first_other.empty()) in_first_block = false;
    if (text == std::string::npos || rule || !in_first_block) continue;
    first_other += (first_other.empty() ? "" : " ") + line.substr(text);
  }
  if (code == 0 || !ours.empty()) {
    fmt::print(stderr, "{}", code == 0 ? err : ours);
    return code;
  }
  throw Error(ErrorCode::resource, fmt::format("--launch mpi: mpirun exited with status {}{}{}",
                                               code, first_other.empty() ? "" : ": ", first_other));
}

// --launch mpi: runs `mpirun -n W shmgemm-mpi multiply ...` and answers for it.
int run_multiply_mpi(const MultiplyArgs& args) {
  for (const char* option : {"--backing", "--inputs", "--rows-per-step", "--retries",
                             "--in-process", "--fsync", "--timeout"})
    if (args.cmd->count(option) > 0)
      throw Error::bad_option(
          "--launch mpi",
          fmt::format("--launch mpi: {} does not apply (shmgemm-mpi's ranks read their "
                      "rows of A and write their rows of C with MPI-IO)",
                      option));
  const unsigned ranks = args.options.workers > 0 ? args.options.workers : available_cores();
  std::vector<std::string> argv = mpirun_command(ranks, args.hostfile, "--launch mpi", false);
  const std::filesystem::path self = self_executable();
  const std::string program = (self.parent_path() / "shmgemm-mpi").string();
  if (::access(program.c_str(), X_OK) != 0)
    throw Error(ErrorCode::invalid_argument,
                fmt::format("--launch mpi: {} not found (it is built where Open MPI is "
                            "installed; tools/install-deps.sh installs it)",
                            program));
  argv.insert(argv.end(), {program, "multiply", args.a, args.b, "-o", args.out});
  if (args.options.threads > 0)
    argv.insert(argv.end(), {"--threads", std::to_string(args.options.threads)});
  if (args.json) argv.push_back("--json");
  if (args.explain) argv.push_back("--explain");
  return supervise_mpirun(argv);
}

int run_multiply(const MultiplyArgs& args) {
  check_output_name(args.out);
  if (args.mpi) return run_multiply_mpi(args);
  if (!args.hostfile.empty())
    throw Error::bad_option("--hostfile", "--hostfile: only with --launch mpi");
  if (args.options.in_process)
    for (const char* option : {"--workers", "--launch", "--backing", "--retries"})
      if (args.cmd->count(option) > 0)
        throw Error::bad_option(
            "--in-process",
            fmt::format("--in-process: {} does not apply (no workers run)", option));
  const Report r = multiply_files(args.a, args.b, args.out, args.options);
  // With --json, stdout holds only the JSON object: the explanation goes to stderr.
  if (args.explain) fmt::print(args.json ? stderr : stdout, "{}", explain(r));
  if (args.json) {
    nlohmann::json j = report_json(r);
    j["output"] = args.out;
    fmt::print("{}\n", j.dump());
    return 0;
  }
  const bool nothing = r.m * r.n * r.batch == 0 || r.k == 0;
  const std::string how =
      nothing ? "nothing to compute"
      : r.in_process
          ? fmt::format("in process, {}", detail::count(r.threads_per_worker, "OpenBLAS thread"))
          : fmt::format("{} x {}, {}, {}", detail::count(r.workers, "worker"),
                        detail::count(r.threads_per_worker, "thread"), to_string(r.launch),
                        to_string(r.backing));
  fmt::print("{}: {} {} = {} @ {} in {:.3f} s ({:.1f} GFLOP/s; {})\n", args.out,
             shape_string(r.shape), r.dtype, shape_string(r.a_shape), shape_string(r.b_shape),
             r.seconds, r.gflops(), how);
  return 0;
}

}  // namespace

void add_multiply(CLI::App& app, Action& action) {
  const auto [cmd, args] = add_command<MultiplyArgs>(
      app, action, "multiply",
      "C = np.matmul(A, B) from .npy files to a .npy file, on worker processes", run_multiply);
  cmd->footer(
      "Compute C = np.matmul(A, B) for two .npy files (C or Fortran order) and write C as "
      "a C-order .npy: numpy's result dtype, shape and, for integers, bits (wrapping modulo "
      "2^bits as numpy does). Dtypes: int8..int64, uint8..uint64, float32, float64, "
      "complex64, complex128, mixed by numpy's promotion. Shapes: 2-D matrices; a 1-D A is a "
      "row and a 1-D B a column (removed from C); N-D operands are stacks of matrices whose "
      "leading axes broadcast. The output is written under a temporary name and renamed when "
      "complete, so a failed run never leaves a partial file.");
  cmd->add_option("A", args->a, "left operand: (..., m, k), or (k,)")
      ->required()
      ->option_text("FILE");
  cmd->add_option("B", args->b, "right operand: (..., k, n), or (k,)")
      ->required()
      ->option_text("FILE");
  cmd->add_option("-o,--output", args->out, "where to write C ((..., m, n) .npy)")
      ->required()
      ->option_text("FILE REQUIRED");
  add_engine_options(*cmd, args->options, &args->mpi);
  cmd->add_option("--hostfile", args->hostfile,
                  "with --launch mpi: mpirun's hostfile (the nodes and their slots); "
                  "--workers ranks are placed on them")
      ->option_text("FILE");
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
}

}  // namespace shmgemm::cli
