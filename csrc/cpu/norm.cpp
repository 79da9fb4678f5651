// normalization on CPU: the registrations, and the launchers that hand the host code's
// jobs to the vectorised kernels (csrc/cpu/kernels/norm.h, compiled per instruction set).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>
#include <utility>

#include "torch_ops/norm.h"

namespace torch_ops::norm {
namespace {

// The dtype dispatch (and its error messages) stays here, compiled for any CPU. The
// parameters are of the input's dtype, or float32 for a float16/bfloat16 input.
template <typename Job, typename Fn>
void dispatch(const Job& job, const Fn& fn) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.norm", [&] {
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
      fn(scalar_t{}, scalar_t{});
    } else {
      if (job.param_dtype == at::kFloat) {
        fn(scalar_t{}, float{});
      } else {
        fn(scalar_t{}, scalar_t{});
      }
    }
  });
}

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
