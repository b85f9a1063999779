#include <doctest/doctest.h>

#include <vector>

#include "common/partition.hpp"

using namespace shmgemm;

namespace {

std::vector<RowRange> all_ranges(std::size_t m, std::size_t n_way, std::size_t bf) {
  std::vector<RowRange> r;
  for (std::size_t i = 0; i < n_way; ++i)
    r.push_back(partition_rows(m, n_way, i, bf));
  return r;
}

}  // namespace

TEST_CASE("partition_rows: every m <= 100, n_way <= 16, block factor 1..16") {
  for (std::size_t bf : {1, 2, 3, 4, 8, 16}) {
    for (std::size_t m = 0; m <= 100; ++m) {
      const std::size_t units = (m + bf - 1) / bf;
      for (std::size_t n_way = 1; n_way <= 16; ++n_way) {
        CAPTURE(m);
        CAPTURE(n_way);
        CAPTURE(bf);
        const auto r = all_ranges(m, n_way, bf);
        // Contiguous, in order, covering [0, m).
        REQUIRE(r.front().begin == 0);
        REQUIRE(r.back().end == m);
        for (std::size_t i = 0; i < n_way; ++i) {
          REQUIRE(r[i].begin <= r[i].end);
          if (i > 0) REQUIRE(r[i].begin == r[i - 1].end);
        }
        // Boundaries between workers are multiples of the block factor (or m, past which
        // the remaining workers are empty).
        for (std::size_t i = 0; i + 1 < n_way; ++i)
          REQUIRE((r[i].end % bf == 0 || r[i].end == m));
        if (units < n_way) continue;
        // Whole units differ by at most one, larger first; only the last may be partial.
        for (std::size_t i = 0; i + 1 < n_way; ++i) {
          REQUIRE(r[i].size() % bf == 0);
          REQUIRE(r[i].size() >= r[i + 1].size());
          if (i + 2 < n_way) REQUIRE(r[i].size() - r[i + 1].size() <= bf);
        }
        REQUIRE(r.front().size() <= r.back().size() + bf + (m % bf ? bf : 0));
        // With at least as many units as workers, nobody is idle.
        for (const RowRange& x : r)
          REQUIRE(x.size() > 0);
      }
    }
  }
}

TEST_CASE("partition_rows: the worked cases of the header's table") {
  CHECK(all_ranges(10, 3, 1) == std::vector<RowRange>{{0, 4}, {4, 7}, {7, 10}});
  CHECK(all_ranges(10, 2, 8) == std::vector<RowRange>{{0, 8}, {8, 10}});
  CHECK(all_ranges(100, 3, 8) == std::vector<RowRange>{{0, 40}, {40, 72}, {72, 100}});
  CHECK(all_ranges(7, 3, 1) == std::vector<RowRange>{{0, 3}, {3, 5}, {5, 7}});
  CHECK(all_ranges(2, 3, 1) == std::vector<RowRange>{{0, 1}, {1, 2}, {2, 2}});
}

TEST_CASE("cache_line_rows: the smallest row count spanning whole 64-byte lines") {
  for (std::size_t item : {4, 8}) {
    for (std::size_t n = 1; n <= 100; ++n) {
      CAPTURE(n);
      CAPTURE(item);
      const std::size_t r = cache_line_rows(n, item);
      REQUIRE(r >= 1);
      REQUIRE((r * n * item) % 64 == 0);
      for (std::size_t smaller = 1; smaller < r; ++smaller)
        REQUIRE((smaller * n * item) % 64 != 0);
    }
  }
  CHECK(cache_line_rows(4000, 8) == 1);
  CHECK(cache_line_rows(6, 8) == 4);
  CHECK(cache_line_rows(1, 4) == 16);
  CHECK(cache_line_rows(0, 8) == 1);
}

TEST_CASE("plan_row_split: no idle worker, aligned where the shape allows") {
  for (std::size_t aligned : {1, 2, 4, 8, 16}) {
    for (std::size_t m = 0; m <= 100; ++m) {
      for (std::size_t requested = 1; requested <= 16; ++requested) {
        CAPTURE(m);
        CAPTURE(requested);
        CAPTURE(aligned);
        const RowSplit s = plan_row_split(m, requested, aligned);
        REQUIRE(s.workers == std::min(m, requested));
        if (s.workers == 0) continue;
        const std::size_t aligned_units = (m + aligned - 1) / aligned;
        REQUIRE(s.block_factor == (aligned_units >= s.workers ? aligned : 1));
        for (const RowRange& x : all_ranges(m, s.workers, s.block_factor))
          REQUIRE(x.size() > 0);
      }
    }
  }
}

TEST_CASE("the shapes the joblib and multiprocessing recipes fail on split cleanly") {
  // joblib's np.split(A, 3) fails on 10 rows; the multiprocessing `slices` made empty and
  // inverted slices for 1 row on 3 processes.
  const RowSplit s10 = plan_row_split(10, 3, 1);
  CHECK(all_ranges(10, s10.workers, s10.block_factor) ==
        std::vector<RowRange>{{0, 4}, {4, 7}, {7, 10}});
  const RowSplit s1 = plan_row_split(1, 3, 1);
  CHECK(s1.workers == 1);
  CHECK(all_ranges(1, s1.workers, s1.block_factor) == std::vector<RowRange>{{0, 1}});
}

namespace {

std::vector<RowRange> weighted_ranges(std::size_t m, const std::vector<unsigned>& w,
                                      std::size_t bf) {
  std::vector<RowRange> r;
  for (std::size_t i = 0; i < w.size(); ++i)
    r.push_back(partition_rows_weighted(m, w, i, bf));
  return r;
}

}  // namespace

TEST_CASE("partition_rows_weighted: every m <= 60, up to 4 parts of weight 1..3, bf 1..8") {
  std::vector<unsigned> w;
  // Every weight vector of 1..4 parts with weights 1..3.
  for (std::size_t parts = 1; parts <= 4; ++parts) {
    std::size_t combos = 1;
    for (std::size_t i = 0; i < parts; ++i)
      combos *= 3;
    for (std::size_t c = 0; c < combos; ++c) {
      w.assign(parts, 1);
      std::size_t x = c;
      for (std::size_t i = 0; i < parts; ++i, x /= 3)
        w[i] = static_cast<unsigned>(1 + x % 3);
      unsigned total = 0;
      for (unsigned v : w)
        total += v;
      for (std::size_t bf = 1; bf <= 8; ++bf)
        for (std::size_t m = 0; m <= 60; ++m) {
          CAPTURE(parts);
          CAPTURE(c);
          CAPTURE(bf);
          CAPTURE(m);
          const auto r = weighted_ranges(m, w, bf);
          const double units = double((m + bf - 1) / bf);
          std::size_t at = 0;
          for (std::size_t i = 0; i < parts; ++i) {
            // Contiguous, in order, boundaries on whole units (or at m).
            CHECK(r[i].begin == at);
            CHECK(r[i].end >= r[i].begin);
            CHECK((r[i].end % bf == 0 || r[i].end == m));
            // Within one unit of the part's share.
            const double share = units * w[i] / total;
            const double got = double((r[i].end + bf - 1) / bf) - double(r[i].begin / bf);
            CHECK(got > share - 1.0);
            CHECK(got < share + 1.0);
            at = r[i].end;
          }
          CHECK(at == m);
        }
    }
  }
}

TEST_CASE("partition_rows_weighted: the worked cases of the header's table") {
  CHECK(weighted_ranges(10, {1, 1, 1}, 1) == std::vector<RowRange>{{0, 4}, {4, 7}, {7, 10}});
  CHECK(weighted_ranges(12, {2, 1, 1}, 1) == std::vector<RowRange>{{0, 6}, {6, 9}, {9, 12}});
  CHECK(weighted_ranges(10, {1, 3}, 4) == std::vector<RowRange>{{0, 4}, {4, 10}});
  CHECK(weighted_ranges(2, {1, 1, 1}, 1) == std::vector<RowRange>{{0, 1}, {1, 2}, {2, 2}});
}
