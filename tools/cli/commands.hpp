// The subcommands of the shmgemm program.
#pragma once

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <charconv>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/dtype.hpp"
#include "common/npy_file.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm::cli {

// A subcommand's action, run after parsing. Returns the exit status.
using Action = std::function<int()>;

// A number of type T, the whole text, for which `ok` holds; else "'TEXT' is not WHAT".
template <class T, class Ok>
CLI::Validator number(Ok ok, std::string what, std::string shown) {
  return CLI::Validator(
      [ok, what](std::string& text) -> std::string {
        T value{};
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size() || !ok(value))
          return fmt::format("'{}' is not {}", text, what);
        return {};
      },
      std::move(shown));
}

// Adds subcommand `name` whose options fill an Args; when the command line chooses it, `action`
// becomes run(args). Returns the subcommand and its Args, for the options to be declared on.
template <class Args, class Run>
std::pair<CLI::App*, std::shared_ptr<Args>> add_command(CLI::App& app, Action& action,
                                                        const std::string& name,
                                                        const std::string& description, Run run) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(name, description);
  cmd->callback([args, run, &action] { action = [args, run] { return run(*args); }; });
  return {cmd, args};
}

// Adds --workers, --threads, --launch, --backing and --retries, stored into `options`; retries
// are announced on stderr. With `mpi`, --launch also takes "mpi", which sets *mpi.
void add_engine_options(CLI::App& cmd, FileOptions& options, bool* mpi = nullptr);
// The library's messages with its Options fields named as the flags that set them
// ("Options::rows_per_step: ..." -> "--rows-per-step: ...").
std::string as_flags(std::string message);

// The conventions every subcommand shares (conventions.cpp).
// Levenshtein distance, and the choice nearest `word` when close enough to be a typo (else "").
std::size_t edit_distance(std::string_view a, std::string_view b);
std::string nearest(std::string_view word, const std::vector<std::string>& choices);
// A check that a value is one of `choices`: "'forkk' is not one of auto, fork, spawn (did you
// mean 'fork'?)".
CLI::Validator one_of(std::vector<std::string> choices);
// The same for a dtype among `choices` (numpy's names), taking numpy's other spellings of it as
// np.dtype() does here ("f8", "double", "float", "<i8", "int", "complex", ...) and giving the
// value numpy's name.
CLI::Validator dtype_choice(std::vector<std::string> choices);
// `shmgemm --version`: the version, git revision, OpenBLAS's configuration and CPU kernel.
std::string version_text();
// What answers before CLI11 parses `args` (argv without the program): --version or -V anywhere
// (0); no arguments (a short usage, 2); an unknown subcommand or top-level option, also after
// `help` (its message with the nearest name, 2); or nothing, with `help [SUBCOMMAND]` rewritten
// to `[SUBCOMMAND] --help`.
std::optional<int> answer_without_parsing(const CLI::App& app, std::vector<std::string>& args);
// The message for arguments CLI11 did not expect: each named, the nearest option suggested,
// and the subcommand's --help.
std::string unknown_arguments(const CLI::App& app);
// Help without CLI11's type clutter: "N" or "a|b" after each option, its default said in its
// description; for every subcommand.
void tidy_help(CLI::App& app);
// The exit status for a failure, from its code: 2 (usage) for a bad or conflicting option
// (Error::bad_option), 128 + N for an interrupt by signal N, else 1.
int exit_status(const Error& e);

void add_multiply(CLI::App& app, Action& action);
void add_gen(CLI::App& app, Action& action);
void add_demo(CLI::App& app, Action& action);
void add_gc(CLI::App& app, Action& action);
void add_calibrate(CLI::App& app, Action& action);
void add_bench(CLI::App& app, Action& action);
void add_footprint(CLI::App& app, Action& action);

// Whole numbers joined by 'x' ("4000x3000"). Throws Error naming `option`.
std::vector<std::uint64_t> parse_dims(const std::string& text, std::string_view option,
                                      bool allow_zero);
// "MxKxN", or "N" for a square product: {m, k, n}, all positive.
std::array<std::uint64_t, 3> parse_product_shape(const std::string& text, std::string_view option);
// A positive whole number. Throws Error naming `option`.
std::uint64_t parse_count(const std::string& text, std::string_view option);
// "a,b,c" -> {"a", "b", "c"}; empty items are dropped.
std::vector<std::string> split_list(const std::string& text);
// Error(invalid_argument) for --output - (standard output: not supported, say so).
void check_output_name(const std::string& out);
// The data bytes of a .npy of `shape` (Error naming `option` when they overflow).
std::uint64_t npy_data_bytes(DType dtype, const std::vector<std::uint64_t>& shape,
                             std::string_view option);
// Error(resource) before writing `bytes` to `out` when its filesystem has less room.
void check_room(const std::filesystem::path& out, std::uint64_t bytes);
// "1.5 GiB", "512 bytes".
std::string size_string(std::uint64_t bytes);
// The median of `v` (not empty).
double median(std::vector<double> v);

__extension__ using int128 = __int128;
__extension__ using uint128 = unsigned __int128;

// `shmgemm bench --matmul`: np.matmul's cases (`names`: comma-separated, empty for all)
// against numpy's peer script in `peers_dir`.
int run_matmul_bench(const std::string& names, int rounds, const std::filesystem::path& peers_dir,
                     bool json);

// `shmgemm bench --mpi`: shmgemm-mpi against ScaLAPACK's pdgemm and the single-machine engine
// on size x size float64 matrices with `ranks` ranks, on the nodes of `hostfile` (empty: this
// machine).
int run_mpi_bench(std::uint64_t size, int ranks, int rounds, bool json,
                  const std::string& hostfile);

// `shmgemm bench --out-of-core`: one float64 product larger than a memory cgroup, shmgemm
// against dask.array and a numpy loop over slabs (peer scripts in `peers_dir`), each in a cgroup
// of `limit` bytes (root), the operands in a folder under `dir` (on its disk).
struct OutOfCoreBenchArgs {
  std::string shape = "1024x196608x1024";
  std::uint64_t limit = std::uint64_t{512} << 20;
  int rounds = 3;
  std::string dir = ".";
  std::string peers_dir;
  double peer_timeout = 300;
  bool json = false;
};
int run_out_of_core_bench(const OutOfCoreBenchArgs& args);

// Largest |x - y| over the elements of two float or complex arrays of one dtype and shape (real
// and imaginary parts alike); the largest |y| in *largest_y when given.
double max_abs_diff(const NpyMapping& x, const NpyMapping& y, double* largest_y = nullptr);

// Integers LO <= x < HI, as numpy's randint(LO, HI).
struct IntRange {
  int128 lo = 0, hi = 0;
};

// Writes a .npy of random values from a fixed seed (splitmix64), straight into the mapped
// output: uniform in [0, 1) for floats (each part for complex), the whole range for integers,
// or the integers of `range` when given.
void write_random_npy(const std::filesystem::path& path, DType dtype,
                      const std::vector<std::uint64_t>& shape, std::uint64_t seed,
                      const std::optional<IntRange>& range = std::nullopt);

}  // namespace shmgemm::cli
