#include "engine/placement.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/mapped_file.hpp"
#include "engine/engine_memory.hpp"

namespace shmgemm::detail {
namespace {

constexpr std::uint64_t kCopyChunk = 16 << 20;
constexpr std::uint64_t kHugePage = 2 << 20;

// A read-write mapping of `bytes` for the result, or Error(resource).
Mapping map_result(std::uint64_t bytes, int flags, int fd) {
  return {bytes, PROT_READ | PROT_WRITE, flags, fd, "the result's memory"};
}

OperandRef ref_to(Storage storage, const std::string& name, std::uint64_t offset) {
  OperandRef r;
  r.storage = storage;
  r.offset = offset;
  check_operand_name(name);
  copy_name(r.name, name);
  return r;
}

std::vector<std::int64_t> signed_shape(const std::vector<std::uint64_t>& shape) {
  return {shape.begin(), shape.end()};
}

}  // namespace

void Placement::stage(Operand& op, std::string_view role, std::optional<SharedSegment>& seg,
                      const NpyMapping* file) {
  const std::uint64_t bytes = op.bytes();
  // In a pool's arena and reachable by its descriptor (a fork pool's arena too): no copy.
  if (!file)
    if (const auto at = find_engine_memory(op.local, bytes); at && !at->segment.empty()) {
      op.ref = ref_to(Storage::shm, at->segment, at->offset);
      return;
    }
  seg = SharedSegment::create(role, std::max<std::uint64_t>(bytes, 1));
  // With a file, each chunk of its pages is dropped once copied: A and B are never held twice.
  for (std::uint64_t at = 0; at < bytes; at += kCopyChunk) {
    const std::uint64_t n = std::min(kCopyChunk, bytes - at);
    std::memcpy(seg->data() + at, op.local + at, n);
    if (file) file->drop_pages(at, n);
  }
  copied_ += bytes;
  op.local = seg->data();
  op.ref = ref_to(Storage::shm, seg->name(), 0);
}

Placement::Placement(Product& p, const NpyMapping& a, const NpyMapping& b, const NpyOutput& out,
                     Backing backing, bool workers) {
  p.c.local = out.data();
  if (!workers) return;
  if (backing == Backing::file) {
    p.a.ref = ref_to(Storage::file, a.path_for_workers(), a.header().data_offset);
    p.b.ref = ref_to(Storage::file, b.path_for_workers(), b.header().data_offset);
    p.c.ref = ref_to(Storage::file, out.path_for_workers(), out.header().data_offset);
    return;
  }
  stage(p.a, "a", a_seg_, &a);
  stage(p.b, "b", b_seg_, &b);
  c_bytes_ = out.header().data_bytes;
  c_seg_ = SharedSegment::create("c", std::max<std::uint64_t>(c_bytes_, 1));
  p.c = {c_seg_->data(), ref_to(Storage::shm, c_seg_->name(), 0)};
  c_from_ = c_seg_->data();
  c_to_ = MutableArrayView(out.data(), p.result, signed_shape(p.shape.out_shape));
  output_ = &out;
  copied_ += c_bytes_;
}

Placement::Placement(Product& p, const MutableArrayView& out, Launch launch, bool workers) {
  c_bytes_ = p.c_elements() * item_size(p.result);
  if (!workers) {
    if (out.is_c_contiguous()) {
      p.c.local = static_cast<std::byte*>(out.mutable_data());
      return;
    }
    c_own_.resize(c_bytes_);
    p.c.local = c_own_.data();
  } else {
    place_inputs(p, launch);
    // Written in place when the workers can reach it: forked ones inherit a Pool's arena,
    // spawned ones map it by its descriptor.
    if (out.is_c_contiguous())
      if (const auto at = find_engine_memory(out.data(), c_bytes_)) {
        p.c = {static_cast<std::byte*>(out.mutable_data()),
               ref_to(Storage::shm, at->segment.empty() ? "inherited" : at->segment, at->offset)};
        return;
      }
    c_seg_ = SharedSegment::create("c", std::max<std::uint64_t>(c_bytes_, 1));
    p.c = {c_seg_->data(), ref_to(Storage::shm, c_seg_->name(), 0)};
  }
  c_from_ = p.c.local;
  c_to_ = out;
  copied_ += c_bytes_;
}

void Placement::place_inputs(Product& p, Launch launch) {
  // Forked workers read A and B where they are (the refs are never read); spawned ones need
  // them staged where they can map them.
  if (launch == Launch::spawn) {
    stage(p.a, "a", a_seg_, nullptr);
    stage(p.b, "b", b_seg_, nullptr);
  } else {
    p.a.ref = ref_to(Storage::shm, "inherited", 0);
    p.b.ref = ref_to(Storage::shm, "inherited", 0);
  }
}

Placement::Placement(Product& p, const NewResult& out, Launch launch, bool workers) {
  if (workers) place_inputs(p, launch);
  p.c = out.area(launch);
}

NewResult::NewResult(std::uint64_t bytes, bool workers, bool huge_pages)
    : bytes_(std::max<std::uint64_t>(bytes, 1)) {
  if (!workers) {
    if (bytes_ < kHugePage) {
      private_ = std::shared_ptr<std::byte[]>(new std::byte[bytes_]);
      return;
    }
    private_ = map_result(bytes_, MAP_PRIVATE | MAP_ANONYMOUS, -1).share();
    if (huge_pages) ::madvise(private_.get(), bytes_, MADV_HUGEPAGE);  // advice: THP may be off
    return;
  }
  memfd_ = memory_file("shmgemm-c", bytes_, "the result's memory");
  private_ = map_result(bytes_, MAP_PRIVATE, memfd_.get()).share();
  shared_ = map_result(bytes_, MAP_SHARED, memfd_.get());
}

void populate_for_writing(std::byte* p, std::uint64_t bytes) {
#ifdef MADV_POPULATE_WRITE
  advise_pages(p, bytes, MADV_POPULATE_WRITE);
#else
  static_cast<void>(p);
  static_cast<void>(bytes);
#endif
}

ResultArea NewResult::area(Launch launch) const {
  if (!shared_) return {static_cast<std::byte*>(private_.get()), {}};
  // Forked workers write through the shared mapping they inherit.
  const std::string name = launch == Launch::spawn ? memfd_.path_for_others() : "inherited";
  return {shared_.data(), ref_to(launch == Launch::spawn ? Storage::file : Storage::shm, name, 0)};
}

std::shared_ptr<void> NewResult::release() {
  shared_.reset();
  memfd_.reset();  // the private mapping keeps the pages
  return std::move(private_);
}

void Placement::finish() {
  if (!c_to_) return;
  // The workers are done with A and B: release them before C is copied out.
  a_seg_.reset();
  b_seg_.reset();
  if (!c_to_->is_c_contiguous()) {
    scatter_from(c_from_, *c_to_);
    return;
  }
  // In chunks, freeing each chunk of the segment and unmapping each written chunk of a file
  // output as it goes, so that C is never held twice.
  auto* to = static_cast<std::byte*>(c_to_->mutable_data());
  for (std::uint64_t at = 0; at < c_bytes_; at += kCopyChunk) {
    const std::uint64_t n = std::min(kCopyChunk, c_bytes_ - at);
    std::memcpy(to + at, c_from_ + at, n);
    release_rows(at, n);
  }
}

void Placement::release_rows(std::uint64_t begin, std::uint64_t bytes) {
  // The segment's pages go back to /dev/shm; a file output's written pages are unmapped.
  if (c_seg_) advise_pages(c_seg_->data() + begin, bytes, MADV_REMOVE);
  if (output_) output_->drop_pages(begin, bytes);
}

}  // namespace shmgemm::detail
