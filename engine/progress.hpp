// A progress bar on stderr for long runs, fed with rows of C done.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmgemm::detail {

// Draws "[#####.....] 45%  1800/4000 rows  85.2 GFLOP/s" on stderr, at most every 100 ms and
// only once the run has lasted a second; erases it when destroyed. Does nothing when disabled.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::uint64_t total_rows, double flops_per_row);
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar();
  void update(std::uint64_t rows_done);

 private:
  bool enabled_;
  bool drawn_ = false;
  std::uint64_t total_;
  double flops_per_row_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace shmgemm::detail
