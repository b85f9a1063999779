#include "engine/progress.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <string>

namespace shmgemm::detail {

ProgressBar::ProgressBar(bool enabled, std::uint64_t total_rows, double flops_per_row)
    // Only where someone watches it: into a pipe or a log, carriage returns and escape codes
    // are noise.
    : enabled_(enabled && total_rows > 0 && ::isatty(STDERR_FILENO) != 0),
      total_(total_rows),
      flops_per_row_(flops_per_row),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fputs("\r\033[K", stderr);
}

void ProgressBar::update(std::uint64_t rows_done) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (elapsed < 1.0 || (drawn_ && now - last_ < std::chrono::milliseconds(100))) return;
  last_ = now;
  drawn_ = true;
  constexpr int kWidth = 30;
  const double done = double(rows_done) / double(total_);
  const int filled = static_cast<int>(done * kWidth);
  fmt::print(stderr, "\r[{}{}] {:3.0f}%  {}/{} rows  {:.1f} GFLOP/s\033[K",
             std::string(filled, '#'), std::string(kWidth - filled, '.'), done * 100, rows_done,
             total_, double(rows_done) * flops_per_row_ / elapsed / 1e9);
  std::fflush(stderr);
}

}  // namespace shmgemm::detail
