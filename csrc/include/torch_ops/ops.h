// C++ entry points to the dispatcher ops. Calls made through these go through the
// dispatcher (autograd, fake tensors, torch.compile tracing), exactly like
// torch.ops.torch_ops.<op> from Python. The schemas live in csrc/ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <optional>

namespace torch_ops::ops {

at::Tensor linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias);
at::Tensor linear_grad_weight(const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor linear_grad_bias(const at::Tensor& grad_output);

}  // namespace torch_ops::ops
