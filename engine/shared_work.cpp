#include "engine/shared_work.hpp"

#include <algorithm>
#include <array>
#include <compare>
#include <cstring>
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

// `x` as one matrix for every window: 2-D, or a stack of `count` (or 1) whose batch axis does
// not move (stride 0).
std::optional<ArrayView> one_matrix(const ArrayView& x, std::int64_t count) {
  if (x.ndim() == 2) return x;
  if (x.ndim() != 3 || (x.shape()[0] != 1 && (x.shape()[0] != count || x.strides()[0] != 0)))
    return std::nullopt;
  return ArrayView(x.data(), x.dtype(), {x.shape()[1], x.shape()[2]},
                   {x.strides()[1], x.strides()[2]});
}

}  // namespace

std::optional<StackWindows> stack_windows(const ArrayView& a, const ArrayView& b) {
  for (const bool by_columns : {true, false}) {
    const ArrayView& stack = by_columns ? b : a;
    if (stack.ndim() != 3 || stack.size() == 0) continue;
    const std::int64_t count = stack.shape()[0];
    const int along = by_columns ? 2 : 1, across = by_columns ? 1 : 2;
    const std::int64_t unit = stack.strides()[along], batch = stack.strides()[0];
    const std::int64_t width = stack.shape()[along];
    if (count < 2 || unit <= 0 || batch <= 0 || batch % unit != 0 || batch / unit >= width)
      continue;
    const std::optional<ArrayView> other = one_matrix(by_columns ? a : b, count);
    if (!other || other->size() == 0) continue;
    StackWindows w;
    w.by_columns = by_columns;
    w.count = static_cast<std::uint64_t>(count);
    w.step = static_cast<std::uint64_t>(batch / unit);
    const std::int64_t joined = (count - 1) * (batch / unit) + width;
    std::vector<std::int64_t> shape(2), strides(2);
    shape[static_cast<std::size_t>(along - 1)] = joined;
    shape[static_cast<std::size_t>(across - 1)] = stack.shape()[across];
    strides[static_cast<std::size_t>(along - 1)] = unit;
    strides[static_cast<std::size_t>(across - 1)] = stack.strides()[across];
    const ArrayView union_view(stack.data(), stack.dtype(), std::move(shape), std::move(strides));
    w.a = by_columns ? *other : union_view;
    w.b = by_columns ? union_view : *other;
    return w;
  }
  return std::nullopt;
}

void copy_window(const std::byte* joined, std::size_t width, std::size_t item, bool by_columns,
                 std::uint64_t offset, std::size_t rows, std::size_t cols, std::byte* to,
                 std::int64_t row_stride, std::int64_t col_stride) {
  const std::byte* from = joined + window_start(width, item, by_columns, offset);
  for (std::size_t r = 0; r < rows; ++r, from += width * item, to += row_stride) {
    if (col_stride == static_cast<std::int64_t>(item)) {
      std::memcpy(to, from, cols * item);
      continue;
    }
    for (std::size_t c = 0; c < cols; ++c)
      std::memcpy(to + static_cast<std::int64_t>(c) * col_stride, from + c * item, item);
  }
}

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
