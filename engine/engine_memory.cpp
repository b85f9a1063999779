#include "engine/engine_memory.hpp"

#include <map>
#include <mutex>

namespace shmgemm::detail {
namespace {

struct Range {
  std::size_t size;
  std::string segment;
};

std::mutex g_mutex;
std::map<std::uintptr_t, Range> g_ranges;  // by base address

}  // namespace

void register_engine_memory(const void* base, std::size_t size, const std::string& segment) {
  const std::lock_guard lock(g_mutex);
  g_ranges[reinterpret_cast<std::uintptr_t>(base)] = {size, segment};
}

void unregister_engine_memory(const void* base) {
  const std::lock_guard lock(g_mutex);
  g_ranges.erase(reinterpret_cast<std::uintptr_t>(base));
}

std::optional<EngineLocation> find_engine_memory(const void* p, std::size_t bytes) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const std::lock_guard lock(g_mutex);
  auto it = g_ranges.upper_bound(at);
  if (it == g_ranges.begin()) return std::nullopt;
  --it;
  if (at + bytes > it->first + it->second.size) return std::nullopt;
  return EngineLocation{it->second.segment, at - it->first};
}

}  // namespace shmgemm::detail
