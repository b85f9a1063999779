// How a spawned worker reaches a job: by the names in its descriptor.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <vector>

#include "common/bus_guard.hpp"
#include "common/job.hpp"
#include "common/segment.hpp"
#include "worker/general_kernel.hpp"

namespace shmgemm {

// The operands of a validated job, mapped in this process: A and B read-only, C read-write.
// Each mapping is checked to hold the operand's extent at its offset.
class AttachedOperands {
 public:
  // Throws Error naming the operand whose segment or file cannot be mapped or is too small.
  explicit AttachedOperands(const JobDescriptor& job);
  // None yet (a forked worker, which inherits the operands there were when it started).
  AttachedOperands() = default;
  const GeneralOperands& bound() const { return bound_; }
  // Maps the job's prepared B, checked as the others are: for a phase that reads or writes it
  // when it was made after the worker started (a staged job's scan came first).
  std::byte* map_prepared(const JobDescriptor& job);

 private:
  std::byte* map(const OperandRef& ref, char which, DType dtype, bool writable,
                 const char* label = "");

  std::vector<SharedSegment> segments_;
  std::vector<boost::interprocess::mapped_region> files_;
  std::vector<MappingGuard> guards_;
  GeneralOperands bound_;
};

}  // namespace shmgemm
