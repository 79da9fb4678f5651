// linear on CPU: the registrations, and the bias-gradient reduction (its vectorised
// kernel is csrc/cpu/kernels/linear.h, compiled per instruction set).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "torch_ops/linear.h"

namespace torch_ops::linear {

at::Tensor grad_bias_cpu(const at::Tensor& grad_output) {
  const auto g = grad_bias_input_2d(grad_output);
  auto out = at::empty({g.size(1)}, g.options());
  if (out.numel() == 0) return out;
  TORCH_OPS_CPU_KERNEL(linear_column_sum)
  (g.scalar_type(), g.const_data_ptr(), g.size(0), g.size(1), g.stride(0), out.mutable_data_ptr());
  return out;
}

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) {
  m.impl("linear", &forward);
  m.impl("linear_grad_weight", &grad_weight);
  m.impl("linear_grad_bias", &grad_bias_cpu);
}

}  // namespace torch_ops::linear
