// The attention family on CPU: the registrations and the launchers that hand the host
// code's jobs to the tiled kernels (csrc/cpu/kernels/attention.h, compiled per instruction
// set, which compute their tile products themselves).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "torch_ops/attention.h"

namespace torch_ops::attention {
namespace {

// The dtype dispatch (and its error messages) stays here, compiled for any CPU.
void forward_cpu(const Forward& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.scaled_dot_product_attention", [&] {
    TORCH_OPS_CPU_KERNEL(attention_forward<scalar_t>)(job);
  });
}
void backward_cpu(const Backward& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.scaled_dot_product_attention", [&] {
    TORCH_OPS_CPU_KERNEL(attention_backward<scalar_t>)(job);
  });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&forward_cpu, &backward_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::attention
