#include "engine/shared_work.hpp"

#include <algorithm>
#include <array>
#include <compare>
#include <map>

#include "shmgemm/shmgemm.hpp"

namespace shmgemm::detail {
namespace {

using Pairs = std::span<const std::pair<ArrayView, ArrayView>>;

// What windows of one group have in common: the other operand itself, and the window operand's
// dtype, its extent across the windows' axis, its strides and where its elements fall modulo the
// stride along that axis (windows of one array lie a whole number of steps apart).
struct Key {
  std::uintptr_t fixed_data = 0;
  DType fixed_dtype = DType::float64;
  std::array<std::int64_t, 2> fixed_shape{}, fixed_strides{};
  DType dtype = DType::float64;
  std::int64_t across = 0, across_stride = 0, along_stride = 0;
  std::uintptr_t residue = 0;
  auto operator<=>(const Key&) const = default;
};

std::uintptr_t address(const ArrayView& v) {
  return reinterpret_cast<std::uintptr_t>(v.data());
}

bool plain_2d(const ArrayView& v) {
  return v.ndim() == 2 && v.shape()[0] > 0 && v.shape()[1] > 0;
}

// Groups the `candidates` whose window operands (b's columns, or a's rows) are windows of one
// array; the others go to `rest`.
void group_windows(Pairs pairs, std::span<const double> flops,
                   const std::vector<std::size_t>& candidates, bool by_columns, SharedWork& found,
                   std::vector<std::size_t>& rest) {
  const int along = by_columns ? 1 : 0, across = 1 - along;
  std::map<Key, std::vector<std::size_t>> buckets;
  for (std::size_t i : candidates) {
    const auto& [a, b] = pairs[i];
    const ArrayView& fixed = by_columns ? a : b;
    const ArrayView& window = by_columns ? b : a;
    const std::int64_t step = plain_2d(window) ? window.strides()[along] : 0;
    if (!plain_2d(a) || !plain_2d(b) || step <= 0) {
      rest.push_back(i);
      continue;
    }
    Key key{address(fixed),
            fixed.dtype(),
            {fixed.shape()[0], fixed.shape()[1]},
            {fixed.strides()[0], fixed.strides()[1]},
            window.dtype(),
            window.shape()[across],
            window.strides()[across],
            step,
            address(window) % static_cast<std::uintptr_t>(step)};
    buckets[key].push_back(i);
  }
  for (auto& [key, members] : buckets) {
    auto window_of = [&](std::size_t i) -> const ArrayView& {
      return by_columns ? pairs[i].second : pairs[i].first;
    };
    std::stable_sort(members.begin(), members.end(), [&](std::size_t x, std::size_t y) {
      return address(window_of(x)) < address(window_of(y));
    });
    const auto step = static_cast<std::uintptr_t>(key.along_stride);
    // Runs of windows without a gap between them: each run whose windows are more than one
    // is a group.
    for (std::size_t first = 0; first < members.size();) {
      const std::uintptr_t base = address(window_of(members[first]));
      std::uint64_t end = static_cast<std::uint64_t>(window_of(members[first]).shape()[along]);
      std::size_t last = first + 1;
      for (; last < members.size(); ++last) {
        const ArrayView& w = window_of(members[last]);
        const std::uint64_t offset = (address(w) - base) / step;
        if (offset > end) break;
        end = std::max(end, offset + static_cast<std::uint64_t>(w.shape()[along]));
      }
      if (last - first == 1) {
        rest.push_back(members[first]);
        first = last;
        continue;
      }
      SharedProduct g;
      g.by_columns = by_columns;
      const ArrayView& w0 = window_of(members[first]);
      std::vector<std::int64_t> shape = w0.shape();
      shape[static_cast<std::size_t>(along)] = static_cast<std::int64_t>(end);
      const ArrayView joined(w0.data(), w0.dtype(), std::move(shape), w0.strides());
      g.a = by_columns ? pairs[members[first]].first : joined;
      g.b = by_columns ? joined : pairs[members[first]].second;
      g.flops = matmul_flops(g.a, g.b);
      for (std::size_t j = first; j < last; ++j) {
        const std::size_t i = members[j];
        g.members.push_back(i);
        g.offsets.push_back((address(window_of(i)) - base) / step);
        g.member_flops += flops[i];
      }
      found.groups.push_back(std::move(g));
      first = last;
    }
  }
}

}  // namespace

SharedWork find_shared_work(Pairs pairs, std::span<const double> flops) {
  SharedWork found;
  std::vector<std::size_t> all(pairs.size()), after_columns;
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i] = i;
  group_windows(pairs, flops, all, true, found, after_columns);
  std::sort(after_columns.begin(), after_columns.end());
  group_windows(pairs, flops, after_columns, false, found, found.alone);
  std::sort(found.alone.begin(), found.alone.end());
  return found;
}

}  // namespace shmgemm::detail
