// What every subcommand shares on the command line: --version, `shmgemm help`, suggestions for
// a mistyped subcommand or option, and the exit-status rule (2: usage; 1: failure; 128 + N:
// signal N).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "common/npy.hpp"
#include "tools/cli/commands.hpp"
#include "worker/blas_core.hpp"

extern "C" {
char* openblas_get_config(void);
}

namespace shmgemm::cli {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string nearest(std::string_view word, const std::vector<std::string>& choices) {
  std::string best;
  std::size_t best_distance = std::string::npos;
  for (const std::string& c : choices) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Close enough to be a typo: at most a third of the word wrong.
  return best_distance <= std::max<std::size_t>(2, word.size() / 3) ? best : std::string();
}

namespace {

// np.dtype(text).name on this platform (Linux, 64-bit, little-endian) for the spellings numpy
// users write, else `text` as it is: the type codes of .npy descrs ("f8", "<i8", "|u1"), the
// one-character codes and the C names.
std::string numpy_dtype_name(std::string text) {
  if (!text.empty() && (text[0] == '<' || text[0] == '=' || text[0] == '|'))
    text.erase(0, 1);  // this machine's byte order, or none (one byte)
  for (DType d : all_dtypes())
    if (text == npy_descr(d).substr(1)) return std::string(dtype_name(d));
  static const std::vector<std::pair<std::string_view, std::string_view>> aliases = {
      {"b", "int8"},
      {"B", "uint8"},
      {"h", "int16"},
      {"H", "uint16"},
      {"i", "int32"},
      {"I", "uint32"},
      {"l", "int64"},
      {"L", "uint64"},
      {"q", "int64"},
      {"Q", "uint64"},
      {"f", "float32"},
      {"d", "float64"},
      {"F", "complex64"},
      {"D", "complex128"},
      {"byte", "int8"},
      {"ubyte", "uint8"},
      {"short", "int16"},
      {"ushort", "uint16"},
      {"intc", "int32"},
      {"uintc", "uint32"},
      {"int", "int64"},
      {"uint", "uint64"},
      {"long", "int64"},
      {"ulong", "uint64"},
      {"longlong", "int64"},
      {"ulonglong", "uint64"},
      {"intp", "int64"},
      {"uintp", "uint64"},
      {"single", "float32"},
      {"double", "float64"},
      {"float", "float64"},
      {"csingle", "complex64"},
      {"cdouble", "complex128"},
      {"complex", "complex128"},
      {"cfloat", "complex128"}};
  for (const auto& [alias, name] : aliases)
    if (text == alias) return std::string(name);
  return text;
}

std::string not_one_of(const std::string& value, const std::vector<std::string>& choices) {
  const std::string guess = nearest(value, choices);
  return fmt::format("'{}' is not one of {}{}", value, fmt::join(choices, ", "),
                     guess.empty() ? "" : fmt::format(" (did you mean '{}'?)", guess));
}

}  // namespace

CLI::Validator one_of(std::vector<std::string> choices) {
  return CLI::Validator(
      [choices](std::string& value) -> std::string {
        if (std::find(choices.begin(), choices.end(), value) != choices.end()) return {};
        return not_one_of(value, choices);
      },
      "");
}

CLI::Validator dtype_choice(std::vector<std::string> choices) {
  return CLI::Validator(
      [choices](std::string& value) -> std::string {
        const std::string name = numpy_dtype_name(value);
        if (std::find(choices.begin(), choices.end(), name) == choices.end())
          return not_one_of(value, choices);
        value = name;
        return {};
      },
      "");
}

std::string version_text() {
  return fmt::format("shmgemm {} (git {})\nOpenBLAS: {}\nOpenBLAS kernel: {}\n", SHMGEMM_VERSION,
                     SHMGEMM_GIT_REVISION, openblas_get_config(), detail::kernel_text());
}

std::string unknown_arguments(const CLI::App& app) {
  // The subcommand the user was in: the last one parsed; what it did not expect.
  const CLI::App* in = &app;
  for (const CLI::App* sub : app.get_subcommands())
    in = sub;
  const std::vector<std::string> extras = app.remaining(true);
  std::vector<std::string> names;
  for (const CLI::Option* o : in->get_options())
    for (const std::string& l : o->get_lnames())
      names.push_back("--" + l);
  std::string text;
  bool after_option = false;
  for (const std::string& e : extras) {
    const std::string word = e.substr(0, e.find('='));
    // An unknown option's value is not news.
    const bool value = after_option && word.rfind("-", 0) != 0;
    after_option = word.rfind("-", 0) == 0 && e.find('=') == std::string::npos;
    if (value) continue;
    text += text.empty() ? "" : "; ";
    text += word.rfind("-", 0) == 0 ? fmt::format("unknown option '{}'", word)
                                    : fmt::format("unexpected argument '{}'", word);
    if (word.rfind("--", 0) == 0)
      if (const std::string guess = nearest(word, names); !guess.empty())
        text += fmt::format(" (did you mean {}?)", guess);
  }
  const std::string help = in == &app ? "shmgemm --help" : "shmgemm " + in->get_name() + " --help";
  return fmt::format("{}; run '{}'", text, help);
}

std::optional<int> answer_without_parsing(const CLI::App& app, std::vector<std::string>& args) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({}))
    names.push_back(sub->get_name());
  if (args.empty()) {
    // As git does: what there is to run, briefly.
    std::string usage = "usage: shmgemm COMMAND [OPTIONS]\n\ncommands:\n";
    for (const CLI::App* sub : app.get_subcommands({}))
      usage += fmt::format("  {:<10}  {}\n", sub->get_name(), sub->get_description());
    usage +=
        "\n'shmgemm help COMMAND' or 'shmgemm COMMAND --help': a command's options; "
        "'shmgemm --version': the version\n";
    fmt::print(stderr, "{}", usage);
    return 2;
  }
  // --version anywhere before "--", as git's subcommands take it.
  for (const std::string& a : args) {
    if (a == "--") break;
    if (a == "--version" || a == "-V") {
      fmt::print("{}", version_text());
      return 0;
    }
  }
  auto unknown_command = [&](const std::string& word) {
    const std::string guess = nearest(word, names);
    fmt::print(stderr, "shmgemm: unknown command '{}'{}; run 'shmgemm --help'\n", escaped(word),
               guess.empty() ? "" : fmt::format(" (did you mean '{}'?)", guess));
    return 2;
  };
  // `shmgemm help [SUBCOMMAND]` is `shmgemm [SUBCOMMAND] --help`.
  if (args[0] == "help") {
    if (args.size() > 1 && std::find(names.begin(), names.end(), args[1]) == names.end())
      return unknown_command(args[1]);
    args.erase(args.begin());
    args.resize(std::min<std::size_t>(args.size(), 1));
    args.push_back("--help");
    return std::nullopt;
  }
  if (args[0].rfind("-", 0) == 0) {
    const std::string word = args[0].substr(0, args[0].find('='));
    if (word == "-h" || word == "--help" || word == "--help-all") return std::nullopt;
    // -v is how many programs spell it.
    const std::string guess = word == "-v" ? "--version" : nearest(word, {"--help", "--version"});
    fmt::print(stderr, "shmgemm: unknown option '{}'{}; run 'shmgemm --help'\n", escaped(word),
               guess.empty() ? "" : fmt::format(" (did you mean {}?)", guess));
    return 2;
  }
  if (std::find(names.begin(), names.end(), args[0]) == names.end())
    return unknown_command(args[0]);
  // A file whose name begins with '-' reads as an option: say so, rather than that A or B is
  // missing.
  const CLI::App* sub = app.get_subcommand(args[0]);
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-' || a.find_first_of("./") == std::string::npos) continue;
    const std::string word = a.substr(0, a.find('='));
    bool known = false;
    for (const CLI::Option* o : sub->get_options()) {
      for (const std::string& l : o->get_lnames())
        known = known || word == "--" + l;
      for (const std::string& n : o->get_snames())
        known = known || a.rfind("-" + n, 0) == 0;
    }
    // The value of an option just before it (-o -x.npy) is that option's business.
    const bool value = args[i - 1].size() > 1 && args[i - 1][0] == '-' &&
                       args[i - 1].find('=') == std::string::npos;
    if (known || value) continue;
    fmt::print(stderr,
               "shmgemm: '{}' begins with '-' and reads as an option; for a file of that name "
               "write ./{} (or put it after --); run 'shmgemm {} --help'\n",
               escaped(a), escaped(a), args[0]);
    return 2;
  }
  return std::nullopt;
}

void tidy_help(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    if (o->get_expected_min() == 0 || !o->get_option_text().empty()) continue;  // flags; done
    // CLI11's "INT:INT in [1 - 1000]=5" becomes "N", with "(default: 5)" in the description.
    const std::string type = o->get_type_name();
    const std::size_t colon = type.find(':');
    // A positional's name says what it is; an option's value is named after the option, or FILE.
    const bool positional = o->get_lnames().empty() && o->get_snames().empty();
    std::string text = "...";  // a positional that takes several
    if (!positional) {
      text.clear();
      const std::string name = o->get_lnames().empty() ? o->get_snames()[0] : o->get_lnames()[0];
      static const std::vector<std::string> files = {"csv", "plot", "output", "hostfile"};
      if (std::find(files.begin(), files.end(), name) != files.end()) {
        text = "FILE";
      } else {
        for (char ch : name)
          text += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      }
    }
    if (colon != std::string::npos && type.compare(colon + 1, 1, "{") == 0) {
      text = type.substr(colon + 2, type.find('}', colon) - colon - 2);
      std::replace(text.begin(), text.end(), ',', '|');
    } else if (type.rfind("INT", 0) == 0 || type.rfind("UINT", 0) == 0 ||
               type.rfind("FLOAT", 0) == 0) {
      text = "N";
    }
    if (o->get_required()) text += text.empty() ? "REQUIRED" : " REQUIRED";
    o->option_text(text);
    const std::string fallback = o->get_default_str();
    if (!fallback.empty() && o->get_description().find("default") == std::string::npos)
      o->description(fmt::format("{} (default: {})", o->get_description(), fallback));
  }
  for (CLI::App* sub : app.get_subcommands({}))
    tidy_help(*sub);
}

int exit_status(const Error& e) {
  switch (e.code()) {
    case ErrorCode::invalid_argument:
      return e.option().empty() ? 1 : 2;
    case ErrorCode::interrupted:
      return 128 + interrupted_signal();
    default:
      return 1;
  }
}

}  // namespace shmgemm::cli
