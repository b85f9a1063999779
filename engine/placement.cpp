#include "engine/placement.hpp"

#include <cstring>
#include <filesystem>

namespace shmgemm::detail {
namespace {

template <class Ref>
OperandRef ref_of(const Ref& m, Storage storage, const std::string& name, std::uint64_t offset) {
  OperandRef r;
  r.storage = storage;
  r.layout = m.layout;
  r.rows = m.rows;
  r.cols = m.cols;
  r.ld = m.ld;
  r.offset = offset;
  copy_name(r.name, name);
  return r;
}

// A segment holding a copy of the file's data, in the same layout.
Placed<ConstMatrixRef> load_into_segment(const NpyMapping& file, std::string_view role,
                                         std::optional<SharedSegment>& seg) {
  seg = SharedSegment::create(role, file.header().data_bytes);
  std::memcpy(seg->data(), file.data(), file.header().data_bytes);
  ConstMatrixRef local = file.matrix();
  local.data = seg->data();
  return {local, ref_of(local, Storage::shm, seg->name(), 0)};
}

std::string absolute(const std::string& path) {
  return std::filesystem::absolute(path).string();
}

}  // namespace

Placement::Placement(const NpyMapping& a, const NpyMapping& b, const NpyOutput& out,
                     Backing backing) {
  if (backing == Backing::file) {
    a_ = {a.matrix(),
          ref_of(a.matrix(), Storage::file, absolute(a.path()), a.header().data_offset)};
    b_ = {b.matrix(),
          ref_of(b.matrix(), Storage::file, absolute(b.path()), b.header().data_offset)};
    c_ = {out.matrix(),
          ref_of(out.matrix(), Storage::file, out.path_for_workers(), out.header().data_offset)};
    return;
  }
  a_ = load_into_segment(a, "a", a_seg_);
  b_ = load_into_segment(b, "b", b_seg_);
  c_seg_ = SharedSegment::create("c", out.header().data_bytes);
  MatrixRef c_local = out.matrix();
  c_local.data = c_seg_->data();
  c_ = {c_local, ref_of(c_local, Storage::shm, c_seg_->name(), 0)};
}

void Placement::unlink_names() noexcept {
  for (auto* seg : {&a_seg_, &b_seg_, &c_seg_})
    if (*seg) (*seg)->unlink();
}

void Placement::finish(const NpyOutput& out) const {
  if (c_seg_) std::memcpy(out.data(), c_seg_->data(), out.header().data_bytes);
}

}  // namespace shmgemm::detail
