// normalization on CPU: the registrations, and the launchers that hand the host code's
// jobs to the vectorised kernels (csrc/cpu/kernels/norm.h, compiled per instruction set).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>
#include <utility>

#include "torch_ops/norm.h"
#include "torch_ops/norm_dispatch.h"

namespace torch_ops::norm {
namespace {

void forward_cpu(const Forward& job) {
  dispatch(job, [&](auto s, auto p) {
    using SP = std::pair<decltype(s), decltype(p)>;
    TORCH_OPS_CPU_KERNEL(norm_forward<SP>)(job);
  });
}

void backward_cpu(const Backward& job) {
  dispatch(job, [&](auto s, auto p) {
    using SP = std::pair<decltype(s), decltype(p)>;
    TORCH_OPS_CPU_KERNEL(norm_backward<SP>)(job);
  });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&forward_cpu, &backward_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::norm
