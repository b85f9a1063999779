#include "engine/overlap.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace shmgemm::detail {
namespace {

// Sums of strides times extents overflow 64 bits only in 128 (a GCC and Clang extension).
__extension__ typedef __int128 Wide;

// One unknown of the equation: a coefficient (bytes per step, > 0) and how far it may go.
struct Term {
  Wide a = 0;
  Wide ub = 0;
};

// The lowest byte and one past the highest byte of `v`'s elements (relative to data()).
void extent(const ArrayView& v, Wide& low, Wide& high) {
  low = 0;
  high = static_cast<Wide>(item_size(v.dtype()));
  for (std::size_t i = 0; i < v.ndim(); ++i) {
    const Wide reach = static_cast<Wide>(v.strides()[i]) * (v.shape()[i] - 1);
    (reach < 0 ? low : high) += reach;
  }
}

void add_terms(const ArrayView& v, std::vector<Term>& terms) {
  terms.push_back({1, static_cast<Wide>(item_size(v.dtype())) - 1});
  for (std::size_t i = 0; i < v.ndim(); ++i)
    if (v.shape()[i] > 1 && v.strides()[i] != 0) {
      const Wide s = v.strides()[i];
      terms.push_back({s < 0 ? -s : s, v.shape()[i] - 1});
    }
}

Wide gcd(Wide x, Wide y) {
  while (y != 0)
    x = std::exchange(y, x % y);
  return x;
}

// Whether sum a_i x_i = b has a solution with 0 <= x_i <= ub_i, for the terms from `j` on
// (sorted by falling a). reach[j]: the most terms j.. can sum to; divisor[j]: their gcd.
class Search {
 public:
  Search(std::vector<Term> terms, std::uint64_t max_work)
      : terms_(std::move(terms)), left_(max_work) {
    const std::size_t n = terms_.size();
    reach_.assign(n + 1, 0);
    divisor_.assign(n + 1, 0);
    for (std::size_t j = n; j-- > 0;) {
      reach_[j] = reach_[j + 1] + terms_[j].a * terms_[j].ub;
      divisor_[j] = gcd(terms_[j].a, divisor_[j + 1]);
    }
  }
  Overlap solve(Wide b) {
    const int found = dfs(0, b);
    return found > 0 ? Overlap::some : found == 0 ? Overlap::none : Overlap::maybe;
  }

 private:
  // 1: a solution; 0: none; -1: out of work.
  int dfs(std::size_t j, Wide b) {
    if (b < 0 || b > reach_[j]) return 0;
    if (j == terms_.size()) return b == 0 ? 1 : 0;
    if (b % divisor_[j] != 0) return 0;
    const Term& t = terms_[j];
    if (j + 1 == terms_.size()) return b % t.a == 0 && b / t.a <= t.ub ? 1 : 0;
    // The values of x_j that leave the rest a reachable remainder: b - a x in [0, reach[j+1]].
    const Wide rest = reach_[j + 1];
    const Wide lo = std::max<Wide>(0, b > rest ? (b - rest + t.a - 1) / t.a : 0);
    const Wide hi = std::min<Wide>(t.ub, b / t.a);
    bool gave_up = false;
    for (Wide x = hi; x >= lo; --x) {
      if (left_ == 0) return -1;
      --left_;
      const int r = dfs(j + 1, b - t.a * x);
      if (r > 0) return 1;
      gave_up |= r < 0;
    }
    return gave_up ? -1 : 0;
  }

  std::vector<Term> terms_;
  std::vector<Wide> reach_, divisor_;
  std::uint64_t left_;
};

}  // namespace

Overlap overlap(const ArrayView& x, const ArrayView& y, std::uint64_t max_work) {
  if (x.size() == 0 || y.size() == 0) return Overlap::none;
  Wide x_low = 0, x_high = 0, y_low = 0, y_high = 0;
  extent(x, x_low, x_high);
  extent(y, y_low, y_high);
  const auto address = [](const ArrayView& v) {
    return static_cast<Wide>(reinterpret_cast<std::uintptr_t>(v.data()));
  };
  const Wide x_start = address(x) + x_low, x_end = address(x) + x_high;
  const Wide y_start = address(y) + y_low, y_end = address(y) + y_high;
  if (x_start >= y_end || y_start >= x_end) return Overlap::none;
  // With every stride taken positive from each view's lowest byte, a shared byte is
  //   x_start + sum |sx| i + p == y_start + sum |sy| j + q,
  // that is (counting y's steps down from its highest byte instead)
  //   sum |sx| i + p + sum |sy| j' + q' == y_end - 1 - x_start,
  // or the same with the two views swapped: the smaller right-hand side is the easier one.
  const Wide b = std::min(y_end - 1 - x_start, x_end - 1 - y_start);
  std::vector<Term> terms;
  add_terms(x, terms);
  add_terms(y, terms);
  // Equal coefficients are one unknown with the summed bound; zero bounds are nothing.
  std::sort(terms.begin(), terms.end(), [](const Term& l, const Term& r) { return l.a > r.a; });
  std::vector<Term> merged;
  for (const Term& t : terms) {
    if (t.ub == 0) continue;
    if (!merged.empty() && merged.back().a == t.a)
      merged.back().ub += t.ub;
    else
      merged.push_back(t);
  }
  for (Term& t : merged)
    t.ub = std::min(t.ub, b / t.a);
  return Search(std::move(merged), max_work).solve(b);
}

}  // namespace shmgemm::detail
