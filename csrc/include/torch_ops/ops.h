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

// fused
at::Tensor fused_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, std::optional<c10::string_view> activation);
std::tuple<at::Tensor, at::Tensor> fused_linear_preact(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, c10::string_view activation);
std::tuple<at::Tensor, at::Tensor> fused_linear_act_grad(const at::Tensor& grad_output, const at::Tensor& saved, c10::string_view activation, bool bias);

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

// softmax
at::Tensor softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype = std::nullopt);
at::Tensor log_softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype = std::nullopt);
at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim);
at::Tensor log_softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim);
at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_entropy_forward(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing);
at::Tensor cross_entropy_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing, const at::Tensor& row_max, const at::Tensor& log_sum, const at::Tensor& total_weight);
at::Tensor cross_entropy_target_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, double label_smoothing);
at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias, int64_t ignore_index, int64_t reduction, double label_smoothing, std::optional<int64_t> chunk_size, std::optional<at::ScalarType> out_dtype = std::nullopt);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_cross_entropy_chunked(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& grad_output, int64_t ignore_index, int64_t reduction, double label_smoothing, int64_t chunk_size, std::array<bool, 3> output_mask, std::optional<at::ScalarType> out_dtype = std::nullopt);
// norm
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps);
std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward(const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& mean, const at::Tensor& rstd, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& grad_extra, double eps, std::array<bool, 3> output_mask);

// attention
at::Tensor attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed);
std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_backward(const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, const at::Tensor& output, const at::Tensor& lse, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed, std::array<bool, 4> output_mask);

}  // namespace torch_ops::ops
