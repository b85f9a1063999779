// shmgemm: the command-line program. Subcommands in the files beside this one.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "common/npy.hpp"
#include "engine/interrupt.hpp"
#include "tools/cli/commands.hpp"
#include "worker/blas_core.hpp"

int main(int argc, char** argv) {
  using namespace shmgemm;
  // Before any thread: the kernels this CPU calls for, where OpenBLAS fell back.
  detail::use_worker_kernels();
  CLI::App app{
      "shmgemm: large matrix products C = A·B on worker processes that share memory.\n"
      "Each worker computes a contiguous block of rows of C with OpenBLAS, straight into a\n"
      "shared result; A and B are mapped, never copied. Operands are numpy .npy files.",
      "shmgemm"};
  app.require_subcommand(1);
  // A repeated option takes its last value, as git's and rg's do (an alias overridden later).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // Answered before parsing (answer_without_parsing); here for --help to list it.
  bool version = false;
  app.add_flag("-V,--version", version, "print the version, OpenBLAS's build and kernel, and exit");
  cli::Action action;
  cli::add_multiply(app, action);
  cli::add_gen(app, action);
  cli::add_demo(app, action);
  cli::add_gc(app, action);
  cli::add_calibrate(app, action);
  cli::add_bench(app, action);
  cli::add_footprint(app, action);
  cli::tidy_help(app);

  std::vector<std::string> args(argv + 1, argv + argc);
  if (const std::optional<int> status = cli::answer_without_parsing(app, args)) return *status;
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::ExtrasError&) {
    fmt::print(stderr, "shmgemm: {}\n", escaped(cli::unknown_arguments(app)));
    return 2;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, naming the option.
    fmt::print(stderr, "shmgemm: {}\n", escaped(e.what()));
    return 2;
  }
  // SIGINT, SIGTERM and SIGHUP stop a run cleanly: workers killed, nothing left behind.
  handle_interrupts();
  try {
    // One operation: an interrupt from here on stops whatever the command is doing.
    const detail::StopScope interrupts;
    return action();
  } catch (const Error& e) {
    // One line, whatever the message quotes (a file's bytes, a name with a newline), naming
    // the library's fields as the flags that set them.
    const std::string message = cli::as_flags(e.what());
    fmt::print(stderr, "shmgemm: {}\n", escaped(message));
    return cli::exit_status(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "shmgemm: {}\n", escaped(e.what()));
    return 1;
  }
}
