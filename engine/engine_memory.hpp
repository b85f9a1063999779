// Which ranges of this process's memory are shmgemm's own shared memory (a Pool's arena), so
// that operands there reach workers with no copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace shmgemm::detail {

struct EngineLocation {
  std::string segment;  // the shared segment's name
  std::uint64_t offset = 0;
};

// Thread-safe, process-wide.
void register_engine_memory(const void* base, std::size_t size, const std::string& segment);
void unregister_engine_memory(const void* base);
// Where [p, p + bytes) is, when it lies wholly in one registered range.
std::optional<EngineLocation> find_engine_memory(const void* p, std::size_t bytes);

}  // namespace shmgemm::detail
