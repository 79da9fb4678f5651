// activations on CPU: the registrations, and the launchers that hand the host code's jobs
// to the vectorised kernels (csrc/cpu/kernels/activation.h, compiled per instruction set).
#include <torch/library.h>

#include "torch_ops/activation.h"

namespace torch_ops::activation {
namespace {

void pointwise_cpu(const Pointwise& job) { TORCH_OPS_CPU_KERNEL(activation_pointwise)(job); }
void gated_cpu(const Gated& job) { TORCH_OPS_CPU_KERNEL(activation_gated)(job); }

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&pointwise_cpu, &gated_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::activation
