// The softmax family on CPU: the registrations, and the launchers that hand the host code's
// jobs to the vectorised kernels (csrc/cpu/kernels/softmax.h, compiled per instruction set).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "torch_ops/softmax.h"

namespace torch_ops::softmax {
namespace {

// The dtype dispatch (and its error messages) stays here, compiled for any CPU.
void rows_cpu(const Rows& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.softmax",
                                  [&] { TORCH_OPS_CPU_KERNEL(softmax_rows<scalar_t>)(job); });
}
void cross_entropy_cpu(const CrossEntropy& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.cross_entropy",
                                  [&] { TORCH_OPS_CPU_KERNEL(softmax_cross_entropy<scalar_t>)(job); });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&rows_cpu, &cross_entropy_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::softmax
