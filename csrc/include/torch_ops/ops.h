// C++ entry points to the dispatcher ops. Calls made through these go through the
// dispatcher (autograd, fake tensors, torch.compile tracing), exactly like
// torch.ops.torch_ops.<op> from Python. The schemas live in csrc/ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

namespace torch_ops::ops {

at::Tensor linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias);
at::Tensor linear_grad_weight(const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor linear_grad_bias(const at::Tensor& grad_output);

// activation
at::Tensor relu(const at::Tensor& input);
at::Tensor& relu_(at::Tensor& self);
at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor leaky_relu(const at::Tensor& input, double negative_slope);
at::Tensor& leaky_relu_(at::Tensor& self, double negative_slope);
at::Tensor leaky_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, double negative_slope);
at::Tensor gelu(const at::Tensor& input, c10::string_view approximate);
at::Tensor gelu_backward(const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate);
at::Tensor gelu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate);
at::Tensor silu(const at::Tensor& input);
at::Tensor& silu_(at::Tensor& self);
at::Tensor silu_backward(const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor silu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor sigmoid(const at::Tensor& input);
at::Tensor sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor sigmoid_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor tanh(const at::Tensor& input);
at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor tanh_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor glu(const at::Tensor& input, int64_t dim);
at::Tensor glu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
std::tuple<at::Tensor, at::Tensor> glu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
at::Tensor swiglu(const at::Tensor& input, int64_t dim);
at::Tensor swiglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
std::tuple<at::Tensor, at::Tensor> swiglu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
at::Tensor geglu(const at::Tensor& input, int64_t dim, c10::string_view approximate);
at::Tensor geglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim, c10::string_view approximate);
std::tuple<at::Tensor, at::Tensor> geglu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim, c10::string_view approximate);

// norm
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps);
std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward(const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& mean, const at::Tensor& rstd, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& grad_extra, double eps, std::array<bool, 3> output_mask);

}  // namespace torch_ops::ops
