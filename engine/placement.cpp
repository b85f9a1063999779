#include "engine/placement.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/mapped_file.hpp"
#include "engine/engine_memory.hpp"

namespace shmgemm::detail {
namespace {

std::uint64_t extent(const ConstMatrixRef& m, std::size_t item) {
  return matrix_extent_bytes(m.rows, m.cols, m.ld, m.layout, item).value_or(0);
}

constexpr std::uint64_t kCopyChunk = 16 << 20;

// A segment holding a copy of `bytes` at `data`, seen as `m` laid out the same way. With `file`,
// each chunk of the file's pages is unmapped once copied, so that A and B are never held twice.
Placed<ConstMatrixRef> copy_into_segment(ConstMatrixRef m, const std::byte* data,
                                         std::uint64_t bytes, std::string_view role,
                                         std::optional<SharedSegment>& seg,
                                         const NpyMapping* file = nullptr) {
  seg = SharedSegment::create(role, std::max<std::uint64_t>(bytes, 1));
  for (std::uint64_t at = 0; at < bytes; at += kCopyChunk) {
    const std::uint64_t n = std::min(kCopyChunk, bytes - at);
    std::memcpy(seg->data() + at, data + at, n);
    if (file) file->drop_pages(at, n);
  }
  m.data = seg->data();
  return {m, operand_ref(m, Storage::shm, seg->name(), 0)};
}

}  // namespace

Placement::Placement(const NpyMapping& a, const NpyMapping& b, const NpyOutput& out,
                     Backing backing)
    : item_(item_size(a.header().dtype)), label_a_(a.path()), label_b_(b.path()) {
  if (backing == Backing::file) {
    a_ = {a.matrix(),
          operand_ref(a.matrix(), Storage::file, a.path_for_workers(), a.header().data_offset)};
    b_ = {b.matrix(),
          operand_ref(b.matrix(), Storage::file, b.path_for_workers(), b.header().data_offset)};
    c_ = {out.matrix(), operand_ref(out.matrix(), Storage::file, out.path_for_workers(),
                                    out.header().data_offset)};
    return;
  }
  a_ = copy_into_segment(a.matrix(), a.data(), a.header().data_bytes, "a", a_seg_, &a);
  b_ = copy_into_segment(b.matrix(), b.data(), b.header().data_bytes, "b", b_seg_, &b);
  output_ = &out;
  copied_ = a.header().data_bytes + b.header().data_bytes + out.header().data_bytes;
  c_seg_ = SharedSegment::create("c", out.header().data_bytes);
  MatrixRef c_local = out.matrix();
  c_local.data = c_seg_->data();
  c_ = {c_local, operand_ref(c_local, Storage::shm, c_seg_->name(), 0)};
  destination_ = out.matrix();
}

Placed<ConstMatrixRef> Placement::stage(const ConstMatrixRef& m, std::string_view role, DType,
                                        std::optional<SharedSegment>& seg) {
  const std::uint64_t bytes = extent(m, item_);
  // In a pool's arena and reachable by name (a fork pool's arena has none): no copy.
  if (const auto at = find_engine_memory(m.data, bytes); at && !at->segment.empty())
    return {m, operand_ref(m, Storage::shm, at->segment, at->offset)};
  copied_ += bytes;
  return copy_into_segment(m, m.data, bytes, role, seg);
}

Placement::Placement(const ConstMatrixRef& a, const ConstMatrixRef& b, const MatrixRef& c,
                     DType dtype, Launch launch)
    : item_(item_size(dtype)) {
  if (launch == Launch::fork) {
    // Forked workers see this memory as it is: the refs are never read.
    a_ = {a, operand_ref(a, Storage::shm, "inherited", 0)};
    b_ = {b, operand_ref(b, Storage::shm, "inherited", 0)};
  } else {
    a_ = stage(a, "a", dtype, a_seg_);
    b_ = stage(b, "b", dtype, b_seg_);
  }
  const std::uint64_t c_bytes = c.rows * c.cols * item_;
  // Written in place when the workers can reach it: forked ones inherit the arena, spawned
  // ones need its name.
  if (c.layout == Layout::row_major) {
    const auto at =
        find_engine_memory(c.data, extent({c.data, c.rows, c.cols, c.ld, c.layout}, item_));
    if (at && (launch == Launch::fork || !at->segment.empty())) {
      c_ = {c, operand_ref(c, Storage::shm, at->segment, at->offset)};
      return;
    }
  }
  // Workers write into a segment of C's own, row-major; finish() copies it into c.
  c_seg_ = SharedSegment::create("c", std::max<std::uint64_t>(c_bytes, 1));
  const MatrixRef local{c_seg_->data(), c.rows, c.cols, std::max<std::uint64_t>(c.cols, 1),
                        Layout::row_major};
  c_ = {local, operand_ref(local, Storage::shm, c_seg_->name(), 0)};
  destination_ = c;
  copied_ += c_bytes;
}

void Placement::finish() {
  if (!c_seg_) return;
  // The workers are done with A and B: release them before C is copied out.
  a_seg_.reset();
  b_seg_.reset();
  // In chunks, freeing each chunk of the segment and unmapping each written chunk of a file
  // output as it goes, so that C is never held twice.
  const ConstMatrixRef from{c_.local.data, c_.local.rows, c_.local.cols, c_.local.ld,
                            Layout::row_major};
  const std::uint64_t row_bytes = std::max<std::uint64_t>(from.ld * item_, 1);
  const std::uint64_t rows_per_chunk = std::max<std::uint64_t>(1, kCopyChunk / row_bytes);
  for (std::uint64_t r = 0; r < from.rows; r += rows_per_chunk) {
    const std::uint64_t end = std::min(from.rows, r + rows_per_chunk);
    copy_rows(from, destination_, r, end, item_);
    release_rows(r, end);
  }
}

void Placement::release_rows(std::uint64_t begin, std::uint64_t end) {
  const std::uint64_t row_bytes = c_.local.ld * item_;
  // The segment's rows go back to /dev/shm; a file output's written rows are unmapped.
  advise_pages(c_.local.data + begin * row_bytes, (end - begin) * row_bytes, MADV_REMOVE);
  if (output_)
    output_->drop_pages(begin * destination_.ld * item_, (end - begin) * destination_.ld * item_);
}

}  // namespace shmgemm::detail
