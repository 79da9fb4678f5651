// The dtype dispatch of the norm family's launchers (csrc/cpu/norm.cpp, cuda/norm.cu):
// fn(scalar_t{}, param_t{}), the parameters being of the input's dtype, or float32 for a
// float16/bfloat16 input (mixed precision, as PyTorch allows).
#pragma once

#include <ATen/Dispatch.h>

#include <type_traits>

namespace torch_ops::norm {

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

}  // namespace torch_ops::norm
