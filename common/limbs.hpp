// Exact integer products in double precision: how to split integer operands into limbs whose
// products OpenBLAS's dgemm sums without rounding (Ozaki-style splitting). Pure functions.
#pragma once

#include <cstdint>

namespace shmgemm {

// An operand's values x, as int64, are split into `limbs` limbs of `bits` bits:
//   x = l_0 + l_1 2^bits + ... + l_top 2^(bits (limbs - 1)),
// the lower limbs in [0, 2^bits) and the top one signed (x's arithmetic shift), so that every
// |limb| <= 2^bits. With one limb the limb is x itself.
struct LimbPlan {
  unsigned limbs_a = 1, bits_a = 0;
  unsigned limbs_b = 1, bits_b = 0;
  unsigned products = 1;  // dgemm calls: limb pairs whose shift is below the result's bits
};

// The plan with the fewest products for operands whose largest magnitudes are `max_a` and
// `max_b` (uint64 operands are taken as int64 modulo 2^64, so magnitudes are at most 2^63),
// inner dimension `k`, and a result of `result_bits` bits (products are exact modulo
// 2^result_bits). One product when max_a * max_b * k < 2^53; otherwise limb pairs with
// k * 2^(bits_a + bits_b) <= 2^53, so that every sum of k limb products is exact in a double.
// Precondition: 1 <= k <= 2^31, result_bits in {8, 16, 32, 64}.
LimbPlan plan_limbs(std::uint64_t max_a, std::uint64_t max_b, std::uint64_t k,
                    unsigned result_bits);

// True when limb pair (i, j) contributes modulo 2^result_bits: i bits_a + j bits_b < result_bits.
bool limb_pair_needed(const LimbPlan& plan, unsigned i, unsigned j, unsigned result_bits);

// The magnitude |x| of an int64 as uint64 (|INT64_MIN| = 2^63).
inline std::uint64_t magnitude(std::int64_t x) {
  return x < 0 ? 0 - static_cast<std::uint64_t>(x) : static_cast<std::uint64_t>(x);
}

// Limb `i` of `x` under `bits`-bit limbs, `limbs` of them (see LimbPlan).
inline std::int64_t limb_of(std::int64_t x, unsigned i, unsigned bits, unsigned limbs) {
  const std::int64_t shifted = i == 0 ? x : x >> (bits * i);  // arithmetic: floor division
  if (i + 1 == limbs) return shifted;
  return shifted & ((std::int64_t{1} << bits) - 1);
}

}  // namespace shmgemm
