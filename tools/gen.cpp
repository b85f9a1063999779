#include <fmt/format.h>

#include "common/npy_file.hpp"
#include "shmgemm/error.hpp"
#include "tools/commands.hpp"

namespace shmgemm::cli {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

template <class T>
void fill_uniform(T* data, std::uint64_t count, std::uint64_t seed) {
  const std::uint64_t base = splitmix64(seed);
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t bits = splitmix64(base + i);
    if constexpr (sizeof(T) == 8)
      data[i] = static_cast<T>(bits >> 11) * 0x1.0p-53;
    else
      data[i] = static_cast<T>(bits >> 40) * 0x1.0p-24f;
  }
}

}  // namespace

void write_random_npy(const std::filesystem::path& path, DType dtype,
                      const std::vector<std::uint64_t>& shape, std::uint64_t seed) {
  NpyOutput out = NpyOutput::create(path, dtype, shape);
  const std::uint64_t count = out.header().element_count;
  if (dtype == DType::float64)
    fill_uniform(reinterpret_cast<double*>(out.data()), count, seed);
  else
    fill_uniform(reinterpret_cast<float*>(out.data()), count, seed);
  out.commit();
}

void add_gen(CLI::App& app, Action& action) {
  struct Args {
    std::string shape, dtype = "float64", out;
    std::uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "gen", "Write a .npy file of uniform random values in [0, 1), reproducible from --seed.");
  cmd->add_option("--shape", args->shape, "dimensions, such as 4000x4000")->required();
  cmd->add_option("--dtype", args->dtype, "float64 or float32")
      ->check(CLI::IsMember({"float64", "float32"}))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "random seed")->capture_default_str();
  cmd->add_option("-o,--output", args->out, "the .npy file to write")->required();
  cmd->callback([args, &action] {
    action = [args] {
      write_random_npy(args->out, *dtype_from_name(args->dtype),
                       parse_dims(args->shape, "--shape", true), args->seed);
      return 0;
    };
  });
}

}  // namespace shmgemm::cli
