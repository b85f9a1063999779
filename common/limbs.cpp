#include "common/limbs.hpp"

#include <bit>

namespace shmgemm {

bool limb_pair_needed(const LimbPlan& plan, unsigned i, unsigned j, unsigned result_bits) {
  return std::uint64_t{i} * plan.bits_a + std::uint64_t{j} * plan.bits_b < result_bits;
}

LimbPlan plan_limbs(std::uint64_t max_a, std::uint64_t max_b, std::uint64_t k,
                    unsigned result_bits) {
  __extension__ using u128 = unsigned __int128;
  constexpr u128 kExact = u128{1} << 53;
  const unsigned width_a = static_cast<unsigned>(std::bit_width(max_a));
  const unsigned width_b = static_cast<unsigned>(std::bit_width(max_b));
  // (max_a max_b < 2^(width_a + width_b) and k <= 2^31: no overflow when the widths are small.)
  if (width_a + width_b <= 64 && u128{max_a} * max_b * k < kExact)
    return {1, width_a, 1, width_b, 1};
  LimbPlan best;
  best.products = 0;
  for (unsigned na = 1; na <= 64; ++na) {
    const unsigned sa = (width_a + na - 1) / na;
    for (unsigned nb = 1; nb <= 64; ++nb) {
      const unsigned sb = (width_b + nb - 1) / nb;
      // One limb is the value itself (|x| < 2^width); several are bounded by 2^bits.
      if (sa + sb > 53 || (u128{k} << (sa + sb)) > kExact) continue;
      LimbPlan p{na, sa, nb, sb, 0};
      for (unsigned i = 0; i < na; ++i)
        for (unsigned j = 0; j < nb; ++j)
          p.products += limb_pair_needed(p, i, j, result_bits) ? 1 : 0;
      const bool better =
          best.products == 0 || p.products < best.products ||
          (p.products == best.products && p.limbs_a + p.limbs_b < best.limbs_a + best.limbs_b);
      if (better) best = p;
      break;  // more limbs of B for this many of A only add products
    }
  }
  return best;
}

}  // namespace shmgemm
