#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <string_view>
#include <utility>

#include "common/job.hpp"
#include "tools/cli/commands.hpp"
#include "worker/slice_kernel.hpp"

namespace shmgemm::cli {
namespace {

CLI::Validator count_from_one(unsigned max) {
  return number<unsigned>([max](unsigned v) { return v >= 1 && v <= max; },
                          fmt::format("a whole number from 1 to {}", max),
                          fmt::format("1..{}", max));
}

CLI::Validator positive_seconds() {
  return number<double>([](double v) { return v > 0 && std::isfinite(v); },
                        "a number of seconds above 0", "SECONDS");
}

}  // namespace

std::string as_flags(std::string message) {
  static constexpr std::pair<std::string_view, std::string_view> kFlags[] = {
      {"Options::workers", "--workers"},
      {"Options::threads", "--threads"},
      {"Options::launch", "--launch"},
      {"Options::backing", "--backing"},
      {"Options::in_process", "--in-process"},
      {"Options::copy_inputs", "--inputs copy"},
      {"Options::rows_per_step", "--rows-per-step"},
      {"Options::memory", "--memory"},
      {"Options::retries", "--retries"},
      {"Options::fsync", "--fsync"},
      {"Options::timeout", "--timeout"},
  };
  for (const auto& [field, flag] : kFlags)
    for (std::size_t at; (at = message.find(field)) != std::string::npos;)
      message.replace(at, field.size(), flag);
  return message;
}

void add_engine_options(CLI::App& cmd, FileOptions& options, bool* mpi) {
  cmd.add_option_function<std::string>(
         "-w,--workers",
         [&options](const std::string& v) {
           options.workers = v == "auto" ? 0 : static_cast<unsigned>(std::stoul(v));
         },
         "worker processes, or auto (the default): the cost model chooses between running in "
         "process and 1..cores workers (see --explain; `shmgemm calibrate` measures this "
         "machine)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "auto") return {};
            std::string copy = v;
            if (count_from_one(kMaxWorkers)(copy).empty()) return {};
            return fmt::format("'{}' is neither auto nor a whole number from 1 to {}", v,
                               kMaxWorkers);
          },
          ""))
      ->option_text("auto|N");
  cmd.add_option("-t,--threads", options.threads,
                 fmt::format("OpenBLAS threads per worker, at most {} (OpenBLAS's MAX_THREADS; "
                             "default: cores / workers, at least 1; OPENBLAS_NUM_THREADS or "
                             "OMP_NUM_THREADS, when set, is the most)",
                             blas_max_threads()))
      ->check(count_from_one(unsigned(blas_max_threads())))
      ->option_text("N");
  std::vector<std::string> launches = {"auto", "fork", "spawn"};
  if (mpi != nullptr) launches.push_back("mpi");
  cmd.add_option_function<std::string>(
         "--launch",
         [&options, mpi](const std::string& v) {
           options.launch = v == "spawn"  ? Launch::spawn
                            : v == "fork" ? Launch::fork
                                          : Launch::automatic;
           if (mpi != nullptr) *mpi = v == "mpi";
         },
         std::string("auto (the default): fork where no other thread may be inside OpenBLAS, "
                     "else spawn; fork: children of this process; spawn: shmgemm-worker "
                     "executables") +
             (mpi != nullptr ? "; mpi: `mpirun -n W shmgemm-mpi multiply ...` (W from "
                               "--workers, else the cores; see shmgemm-mpi --help)"
                             : ""))
      ->check(one_of(launches))
      ->option_text(mpi != nullptr ? "auto|fork|spawn|mpi" : "auto|fork|spawn");
  cmd.add_option_function<std::string>(
         "--backing",
         [&options](const std::string& v) {
           options.backing = v == "shm" ? Backing::shm : Backing::file;
         },
         "file (the default): workers map the .npy files themselves; shm: A and B are copied "
         "into shared-memory segments and C is computed in one, then copied into the output")
      ->check(one_of({"file", "shm"}))
      ->option_text("file|shm");
  cmd.add_option_function<std::string>(
         "--inputs", [&options](const std::string& v) { options.copy_inputs = v == "copy"; },
         "shared (the default): workers map A and B; copy: each worker copies B and its rows "
         "of A privately, as joblib does (for footprint experiments)")
      ->check(one_of({"shared", "copy"}))
      ->option_text("shared|copy");
  cmd.add_option("--rows-per-step", options.rows_per_step,
                 "larger than memory: compute this many rows of C at a time and release the "
                 "pages of A and C that are done (file backing); default: only when A, B and C "
                 "do not fit in the memory available, then 512")
      ->check(number<std::uint64_t>([](std::uint64_t v) { return v >= 1; },
                                    "a whole number of at least 1", "1.."))
      ->option_text("N");
  cmd.add_option("--memory", options.memory,
                 "larger than memory: the bytes the product may keep resident (512M, 4G...); when "
                 "B does not fit beside a step of rows, it is taken in column panels that do, A "
                 "read once for each (file backing)")
      ->transform(CLI::AsSizeValue(false))
      ->option_text("BYTES")
      ->default_str("the memory available (or the memory cgroup's) less an eighth");
  cmd.add_option("--retries", options.retries,
                 "recompute a failed worker's block in a fresh worker up to this many times "
                 "(default: 0)")
      ->check(
          number<unsigned>([](unsigned v) { return v <= 100; }, "a whole number from 0 to 100", ""))
      ->option_text("N");
  cmd.add_option("--timeout", options.timeout,
                 "give up after this many seconds: workers killed, output left unchanged, exit 1 "
                 "naming the workers that had not finished (default: no limit; a worker stopped "
                 "by a signal is reported, and waited for; with --launch mpi, the job's ranks)")
      ->check(positive_seconds())
      ->option_text("SECONDS");
  options.on_retry = [](const std::string& what) { fmt::print(stderr, "shmgemm: {}\n", what); };
  options.on_stall = options.on_retry;
}

}  // namespace shmgemm::cli
