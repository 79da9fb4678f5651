// activations on CPU: the registrations, and the launchers that hand the host code's jobs
// to the vectorised kernels (csrc/cpu/kernels/activation.h, compiled per instruction set).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "torch_ops/activation.h"

namespace torch_ops::activation {
namespace {

// The dtype dispatch (and its error messages) stays here, compiled for any CPU.
void pointwise_cpu(const Pointwise& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.activation",
                                  [&] { TORCH_OPS_CPU_KERNEL(activation_pointwise<scalar_t>)(job); });
}
void gated_cpu(const Gated& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.gated_activation",
                                  [&] { TORCH_OPS_CPU_KERNEL(activation_gated<scalar_t>)(job); });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&pointwise_cpu, &gated_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::activation
