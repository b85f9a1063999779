#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/clock.hpp"
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

// mpirun's report of a rank that died: "... process rank 2 with PID 0 on node n2 exited on
// signal 9 (Killed)." as "rank 2 on node n2 was killed by signal 9 (Killed)"; else nothing.
std::optional<std::string> rank_that_died(const std::string& mpirun_text) {
  // mpirun wraps its text: the words, one space apart.
  std::istringstream words(mpirun_text);
  std::string text;
  for (std::string w; words >> w;)
    text += (text.empty() ? "" : " ") + w;
  const std::size_t at = text.find("process rank ");
  if (at == std::string::npos) return std::nullopt;
  int rank = 0, pid = 0, signal = 0;
  char node[256] = {}, name[64] = {};
  if (std::sscanf(text.c_str() + at,
                  "process rank %d with PID %d on node %255s exited on signal %d (%63[^)])", &rank,
                  &pid, node, &signal, name) == 5)
    return fmt::format("rank {} on node {} was killed by signal {} ({})", rank, node, signal, name);
  if (std::sscanf(text.c_str() + at, "process rank %d with PID %d on node %255s exited", &rank,
                  &pid, node) == 3)
    return fmt::format("rank {} on node {} exited before the job ended", rank, node);
  return std::nullopt;
}

// mpirun's "ORTE has lost communication with a remote daemon. ... Remote daemon: [[47854,0],2]
// on node n2 ...": the node ("n2"); else nothing.
std::optional<std::string> daemon_lost(const std::string& mpirun_text) {
  if (mpirun_text.find("lost communication with a remote daemon") == std::string::npos)
    return std::nullopt;
  const std::size_t at = mpirun_text.find("Remote daemon:");
  const std::size_t on = at == std::string::npos ? at : mpirun_text.find(" on node ", at);
  if (on == std::string::npos) return std::nullopt;
  std::istringstream rest(mpirun_text.substr(on + 9));
  std::string node;
  rest >> node;
  return node;
}

// shmgemm-mpi's --lost-after, as this program runs it: a rank silent this long is lost.
constexpr double kLostAfter = 10.0;

// How long mpirun may take to end once the job has said why it ends (a lost node, --timeout):
// mpirun waits for the daemons of every node, and one it cannot reach never answers.
constexpr double kMpirunGrace = 3.0;

// Runs mpirun as a child and answers for it: its output passes through; a failure is one
// line (shmgemm-mpi's own; or the rank that died and its node; or mpirun's first words when it
// failed before any rank could say anything); an interrupt of this process kills mpirun, whose
// ranks then get SIGTERM (their parent-death signal) and remove the temporary output, and exits
// 128 + signal. A job that ended itself but whose mpirun waits on for a node it cannot reach is
// ended after kMpirunGrace seconds.
int supervise_mpirun(const std::vector<std::string>& argv) {
  const Fd err_file = memory_file("shmgemm-mpirun-stderr", 0, "a file for mpirun's errors");
  detail::Command command{argv[0], {argv.begin() + 1, argv.end()}, {}};
  command.stderr_fd = err_file.get();
  // mpirun and its daemons notice a node gone silent by TCP keepalives on their connections:
  // after 5 minutes by default, here soon after the ranks' heartbeats have named it (unless the
  // user chose otherwise).
  for (const auto& [key, value] :
       {std::pair<const char*, std::string>{"OMPI_MCA_oob_tcp_keepalive_time",
                                            fmt::format("{:.0f}", kLostAfter + 2)},
        {"OMPI_MCA_oob_tcp_keepalive_intvl", "1"},
        {"OMPI_MCA_oob_tcp_keepalive_probes", "3"}})
    if (std::getenv(key) == nullptr) command.env.emplace_back(key, value);
  std::fflush(nullptr);
  const detail::StopScope interrupts;
  detail::Process mpirun = detail::Process::spawn(command, argv[0]);
  std::optional<std::chrono::steady_clock::time_point> said;
  bool ended_here = false;
  int code = mpirun.join(100, [&] {
    if (!said && file_contents(err_file).find("shmgemm-mpi: ") != std::string::npos)
      said = std::chrono::steady_clock::now();
    if (said && !ended_here && seconds_since(*said) > kMpirunGrace) {
      mpirun.signal(SIGKILL);
      ended_here = true;
    }
  });
  if (ended_here) code = 1;  // the job failed, as it said; mpirun was only slow to end
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
  if (const std::optional<std::string> lost = daemon_lost(err))
    throw Error(ErrorCode::worker_failed,
                fmt::format("--launch mpi: lost node {} (no answer from it: its network or the "
                            "node failed); the output is as it was",
                            *lost));
  if (const std::optional<std::string> died = rank_that_died(err))
    throw Error(ErrorCode::worker_failed,
                fmt::format("--launch mpi: {}; the output is as it was", *died));
  throw Error(ErrorCode::resource, fmt::format("--launch mpi: mpirun exited with status {}{}{}",
                                               code, first_other.empty() ? "" : ": ", first_other));
}

// --launch mpi: runs `mpirun -n W shmgemm-mpi multiply ...` and answers for it.
int run_multiply_mpi(const MultiplyArgs& args) {
  for (const char* option : {"--backing", "--inputs", "--rows-per-step", "--memory", "--retries",
                             "--in-process", "--fsync"})
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
  argv.insert(argv.end(), {"--lost-after", fmt::format("{:g}", kLostAfter)});
  if (args.options.timeout > 0 && std::isfinite(args.options.timeout))
    argv.insert(argv.end(), {"--timeout", fmt::format("{}", args.options.timeout)});
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
