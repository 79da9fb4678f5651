// Every schema of the torch_ops library, in one place. Kernels are registered per
// dispatch key elsewhere: csrc/cpu/<family>.cpp (CPU), cuda/<family>.cu (CUDA),
// csrc/autograd/<family>.cpp (Autograd); fake kernels in torch_ops/<family>.py.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "torch_ops/ops.h"

TORCH_LIBRARY(torch_ops, m) {
  // Each family's fake kernels are registered in torch_ops/<family>.py; set_python_module
  // applies to the defs that follow it, and tells the dispatcher where to find them.

  // linear (csrc/linear.cpp): input (*, in), weight (out, in), bias (out) -> (*, out)
  m.set_python_module("torch_ops.linear");
  m.def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor");
  m.def("linear_grad_weight(Tensor grad_output, Tensor input) -> Tensor");
  m.def("linear_grad_bias(Tensor grad_output) -> Tensor");
  // The gradient formula of linear (CompositeImplicitAutograd, made of the three ops
  // above): returns the gradients that output_mask asks for, in the order
  // (input, weight, bias). torch_ops.autograd.LinearFunction calls it.
  m.def("linear_backward(Tensor grad_output, Tensor? input, Tensor? weight, bool[3] output_mask) -> Tensor[]");

  // fused (csrc/fused.cpp): act(input W^T + b), act one of None, 'relu', 'gelu',
  // 'gelu_tanh', 'silu', with the bias and the activation in the GEMM's epilogue.
  // fused_linear_preact also returns the pre-activation (what autograd saves for gelu and
  // silu); fused_linear_act_grad is (grad_output * act'(saved), its sum over the rows when
  // bias, else a (0,) tensor), saved being the output for relu and the pre-activation
  // otherwise; fused_linear_backward is the gradient formula (CompositeImplicitAutograd),
  // called by torch_ops.autograd.FusedLinearFunction.
  m.set_python_module("torch_ops.fused");
  m.def("fused_linear(Tensor input, Tensor weight, Tensor? bias=None, str? activation=None) -> Tensor");
  m.def("fused_linear_preact(Tensor input, Tensor weight, Tensor? bias, str activation) -> (Tensor, Tensor)");
  m.def("fused_linear_act_grad(Tensor grad_output, Tensor saved, str activation, bool bias) -> (Tensor, Tensor)");
  m.def("fused_linear_backward(Tensor grad_output, Tensor? input, Tensor? weight, Tensor? bias, Tensor? saved, "
        "str? activation, bool[3] output_mask) -> Tensor[]");

  // activation (csrc/activation.cpp): elementwise, any shape; outputs are contiguous.
  // <op>_backward takes what the forward saved: the input, or the result for relu, sigmoid
  // and tanh (and for leaky_relu_, which needs negative_slope >= 0 then). <op>_double_backward
  // is grad_grad_input . d(<op>_backward)/d(input or result). In-place ops carry the inplace tag.
  m.set_python_module("torch_ops.activation");
  const std::vector<at::Tag> inplace = {at::Tag::inplace};
  m.def("relu(Tensor input) -> Tensor");
  m.def("relu_(Tensor(a!) self) -> Tensor(a!)", inplace);
  m.def("relu_backward(Tensor grad_output, Tensor result) -> Tensor");
  m.def("leaky_relu(Tensor input, float negative_slope=0.01) -> Tensor");
  m.def("leaky_relu_(Tensor(a!) self, float negative_slope=0.01) -> Tensor(a!)", inplace);
  m.def("leaky_relu_backward(Tensor grad_output, Tensor input, float negative_slope) -> Tensor");
  m.def("gelu(Tensor input, str approximate='none') -> Tensor");
  m.def("gelu_backward(Tensor grad_output, Tensor input, str approximate='none') -> Tensor");
  m.def("gelu_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor input, str approximate='none') -> Tensor");
  m.def("silu(Tensor input) -> Tensor");
  m.def("silu_(Tensor(a!) self) -> Tensor(a!)", inplace);
  m.def("silu_backward(Tensor grad_output, Tensor input) -> Tensor");
  m.def("silu_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor input) -> Tensor");
  m.def("sigmoid(Tensor input) -> Tensor");
  m.def("sigmoid_backward(Tensor grad_output, Tensor result) -> Tensor");
  m.def("sigmoid_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor result) -> Tensor");
  m.def("tanh(Tensor input) -> Tensor");
  m.def("tanh_backward(Tensor grad_output, Tensor result) -> Tensor");
  m.def("tanh_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor result) -> Tensor");
  // Gated units: a, b = input.chunk(2, dim); glu = a * sigmoid(b), swiglu = silu(a) * b,
  // geglu = gelu(a) * b. Their backward returns the gradient of the whole input, the double
  // backward (d grad_output, d input).
  m.def("glu(Tensor input, int dim=-1) -> Tensor");
  m.def("glu_backward(Tensor grad_output, Tensor input, int dim=-1) -> Tensor");
  m.def("glu_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor input, int dim=-1) -> (Tensor, Tensor)");
  m.def("swiglu(Tensor input, int dim=-1) -> Tensor");
  m.def("swiglu_backward(Tensor grad_output, Tensor input, int dim=-1) -> Tensor");
  m.def("swiglu_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor input, int dim=-1) -> (Tensor, Tensor)");
  m.def("geglu(Tensor input, int dim=-1, str approximate='none') -> Tensor");
  m.def("geglu_backward(Tensor grad_output, Tensor input, int dim=-1, str approximate='none') -> Tensor");
  m.def("geglu_double_backward(Tensor grad_grad_input, Tensor grad_output, Tensor input, int dim=-1, str approximate='none') -> (Tensor, Tensor)");
  // softmax (csrc/softmax.cpp): any dim of any rank; outputs are contiguous; dtype casts the
  // input first (as F.softmax's; autocast on CUDA sets it to float32 when unset). reduction is
  // 0 none, 1 mean, 2 sum. cross_entropy_forward returns what autograd saves: the per-row
  // log-sum-exp as row_max and log_sum = logsumexp - row_max (float, or double for float64;
  // kept apart so that x - logsumexp keeps its small values) and the total weight of the mean
  // (empty for none / sum). linear_cross_entropy_chunked returns (loss, grad_input, grad_weight,
  // grad_bias), the gradients that output_mask asks for (others are empty), times
  // grad_output when given (else of the loss itself). chunk_size 0: the default. out_dtype:
  // the loss's dtype (default the input's; the loss is accumulated in float32, float64 for
  // float64): autocast asks for float32, as cross_entropy(linear(...)) gives under autocast.
  m.set_python_module("torch_ops.softmax");
  m.def("softmax(Tensor input, int dim, ScalarType? dtype=None) -> Tensor");
  m.def("log_softmax(Tensor input, int dim, ScalarType? dtype=None) -> Tensor");
  m.def("softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor");
  m.def("log_softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor");
  m.def("cross_entropy(Tensor input, Tensor target, Tensor? weight=None, int reduction=1, int ignore_index=-100, float label_smoothing=0.0) -> Tensor");
  m.def("cross_entropy_forward(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index, float label_smoothing) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("cross_entropy_backward(Tensor grad_output, Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index, float label_smoothing, Tensor row_max, Tensor log_sum, Tensor total_weight) -> Tensor");
  m.def("cross_entropy_target_backward(Tensor grad_output, Tensor input, Tensor target, Tensor? weight, int reduction, float label_smoothing) -> Tensor");
  m.def("linear_cross_entropy(Tensor input, Tensor weight, Tensor target, Tensor? bias=None, int ignore_index=-100, int reduction=1, float label_smoothing=0.0, int? chunk_size=None, ScalarType? out_dtype=None) -> Tensor");
  m.def("linear_cross_entropy_chunked(Tensor input, Tensor weight, Tensor target, Tensor? bias, Tensor? grad_output, int ignore_index, int reduction, float label_smoothing, int chunk_size, bool[3] output_mask, ScalarType? out_dtype=None) -> (Tensor, Tensor, Tensor, Tensor)");
  // norm (csrc/norm.cpp): over the trailing normalized_shape dims; outputs contiguous.
  // mean / rstd have the input's leading shape, in float for float16/bfloat16 inputs
  // (float64 for float64). rms_norm's eps=None is the opmath type's epsilon (as ATen).
  // norm_backward: mean=None means rms; grad_extra is added to grad_input (the gradient
  // reaching input + residual directly); outputs that output_mask leaves out are empty.
  m.set_python_module("torch_ops.norm");
  m.def("layer_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05) -> (Tensor, Tensor, Tensor)");
  m.def("rms_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, float? eps=None) -> (Tensor, Tensor)");
  m.def("add_layer_norm(Tensor input, Tensor residual, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("add_rms_norm(Tensor input, Tensor residual, int[] normalized_shape, Tensor? weight=None, float? eps=None) -> (Tensor, Tensor, Tensor)");
  m.def("norm_backward(Tensor grad_output, Tensor input, Tensor? mean, Tensor rstd, int[] normalized_shape, Tensor? weight, Tensor? grad_extra, float eps, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // attention (csrc/attention.cpp): scaled_dot_product_attention has the semantics of
  // F.scaled_dot_product_attention (CompositeImplicitAutograd: broadcasting, grouped-query
  // heads, bool masks, the default scale; seed: a CPU int64 tensor with one element, the
  // dropout stream, drawn from torch's generator when None). attention is the core op on
  // q (B, H, L, E), k (B, Hk, S, E), v (B, Hk, S, Ev), Hk dividing H, an additive 4-D mask
  // broadcastable to (B, H, L, S); attention_forward also returns the per-row log-sum-exp
  // (float, or double for float64), what the backward needs; attention_backward returns
  // (grad_query, grad_key, grad_value, grad_mask), those output_mask asks for.
  m.set_python_module("torch_ops.attention");
  m.def("scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False, Tensor? seed=None) -> Tensor");
  m.def("attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask, float dropout_p, bool is_causal, float scale, Tensor? seed) -> Tensor");
  m.def("attention_forward(Tensor query, Tensor key, Tensor value, Tensor? attn_mask, float dropout_p, bool is_causal, float scale, Tensor? seed) -> (Tensor, Tensor)");
  m.def("attention_backward(Tensor grad_output, Tensor query, Tensor key, Tensor value, Tensor? attn_mask, Tensor output, Tensor lse, float dropout_p, bool is_causal, float scale, Tensor? seed, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace torch_ops::ops {
namespace {
template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}
}  // namespace

at::Tensor linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  static const auto op = handle<decltype(linear)>("torch_ops::linear");
  return op.call(input, weight, bias);
}

at::Tensor linear_grad_weight(const at::Tensor& grad_output, const at::Tensor& input) {
  static const auto op = handle<decltype(linear_grad_weight)>("torch_ops::linear_grad_weight");
  return op.call(grad_output, input);
}

at::Tensor linear_grad_bias(const at::Tensor& grad_output) {
  static const auto op = handle<decltype(linear_grad_bias)>("torch_ops::linear_grad_bias");
  return op.call(grad_output);
}

// fused

at::Tensor fused_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        std::optional<c10::string_view> activation) {
  static const auto op = handle<decltype(fused_linear)>("torch_ops::fused_linear");
  return op.call(input, weight, bias, activation);
}

std::tuple<at::Tensor, at::Tensor> fused_linear_preact(const at::Tensor& input, const at::Tensor& weight,
                                                       const std::optional<at::Tensor>& bias,
                                                       c10::string_view activation) {
  static const auto op = handle<decltype(fused_linear_preact)>("torch_ops::fused_linear_preact");
  return op.call(input, weight, bias, activation);
}

std::tuple<at::Tensor, at::Tensor> fused_linear_act_grad(const at::Tensor& grad_output, const at::Tensor& saved,
                                                         c10::string_view activation, bool bias) {
  static const auto op = handle<decltype(fused_linear_act_grad)>("torch_ops::fused_linear_act_grad");
  return op.call(grad_output, saved, activation, bias);
}

// activation

at::Tensor relu(const at::Tensor& input) {
  static const auto op = handle<decltype(relu)>("torch_ops::relu");
  return op.call(input);
}

at::Tensor& relu_(at::Tensor& self) {
  static const auto op = handle<decltype(relu_)>("torch_ops::relu_");
  return op.call(self);
}

at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  static const auto op = handle<decltype(relu_backward)>("torch_ops::relu_backward");
  return op.call(grad_output, result);
}

at::Tensor leaky_relu(const at::Tensor& input, double negative_slope) {
  static const auto op = handle<decltype(leaky_relu)>("torch_ops::leaky_relu");
  return op.call(input, negative_slope);
}

at::Tensor& leaky_relu_(at::Tensor& self, double negative_slope) {
  static const auto op = handle<decltype(leaky_relu_)>("torch_ops::leaky_relu_");
  return op.call(self, negative_slope);
}

at::Tensor leaky_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, double negative_slope) {
  static const auto op = handle<decltype(leaky_relu_backward)>("torch_ops::leaky_relu_backward");
  return op.call(grad_output, input, negative_slope);
}

at::Tensor gelu(const at::Tensor& input, c10::string_view approximate) {
  static const auto op = handle<decltype(gelu)>("torch_ops::gelu");
  return op.call(input, approximate);
}

at::Tensor gelu_backward(const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate) {
  static const auto op = handle<decltype(gelu_backward)>("torch_ops::gelu_backward");
  return op.call(grad_output, input, approximate);
}

at::Tensor gelu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate) {
  static const auto op = handle<decltype(gelu_double_backward)>("torch_ops::gelu_double_backward");
  return op.call(grad_grad_input, grad_output, input, approximate);
}

at::Tensor silu(const at::Tensor& input) {
  static const auto op = handle<decltype(silu)>("torch_ops::silu");
  return op.call(input);
}

at::Tensor& silu_(at::Tensor& self) {
  static const auto op = handle<decltype(silu_)>("torch_ops::silu_");
  return op.call(self);
}

at::Tensor silu_backward(const at::Tensor& grad_output, const at::Tensor& input) {
  static const auto op = handle<decltype(silu_backward)>("torch_ops::silu_backward");
  return op.call(grad_output, input);
}

at::Tensor silu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input) {
  static const auto op = handle<decltype(silu_double_backward)>("torch_ops::silu_double_backward");
  return op.call(grad_grad_input, grad_output, input);
}

at::Tensor sigmoid(const at::Tensor& input) {
  static const auto op = handle<decltype(sigmoid)>("torch_ops::sigmoid");
  return op.call(input);
}

at::Tensor sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  static const auto op = handle<decltype(sigmoid_backward)>("torch_ops::sigmoid_backward");
  return op.call(grad_output, result);
}

at::Tensor sigmoid_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& result) {
  static const auto op = handle<decltype(sigmoid_double_backward)>("torch_ops::sigmoid_double_backward");
  return op.call(grad_grad_input, grad_output, result);
}

at::Tensor tanh(const at::Tensor& input) {
  static const auto op = handle<decltype(tanh)>("torch_ops::tanh");
  return op.call(input);
}

at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  static const auto op = handle<decltype(tanh_backward)>("torch_ops::tanh_backward");
  return op.call(grad_output, result);
}

at::Tensor tanh_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& result) {
  static const auto op = handle<decltype(tanh_double_backward)>("torch_ops::tanh_double_backward");
  return op.call(grad_grad_input, grad_output, result);
}

at::Tensor glu(const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(glu)>("torch_ops::glu");
  return op.call(input, dim);
}

at::Tensor glu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(glu_backward)>("torch_ops::glu_backward");
  return op.call(grad_output, input, dim);
}

std::tuple<at::Tensor, at::Tensor> glu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(glu_double_backward)>("torch_ops::glu_double_backward");
  return op.call(grad_grad_input, grad_output, input, dim);
}

at::Tensor swiglu(const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(swiglu)>("torch_ops::swiglu");
  return op.call(input, dim);
}

at::Tensor swiglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(swiglu_backward)>("torch_ops::swiglu_backward");
  return op.call(grad_output, input, dim);
}

std::tuple<at::Tensor, at::Tensor> swiglu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  static const auto op = handle<decltype(swiglu_double_backward)>("torch_ops::swiglu_double_backward");
  return op.call(grad_grad_input, grad_output, input, dim);
}

at::Tensor geglu(const at::Tensor& input, int64_t dim, c10::string_view approximate) {
  static const auto op = handle<decltype(geglu)>("torch_ops::geglu");
  return op.call(input, dim, approximate);
}

at::Tensor geglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim, c10::string_view approximate) {
  static const auto op = handle<decltype(geglu_backward)>("torch_ops::geglu_backward");
  return op.call(grad_output, input, dim, approximate);
}

std::tuple<at::Tensor, at::Tensor> geglu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output, const at::Tensor& input, int64_t dim, c10::string_view approximate) {
  static const auto op = handle<decltype(geglu_double_backward)>("torch_ops::geglu_double_backward");
  return op.call(grad_grad_input, grad_output, input, dim, approximate);
}

// softmax

at::Tensor softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  static const auto op = handle<decltype(softmax)>("torch_ops::softmax");
  return op.call(input, dim, dtype);
}

at::Tensor log_softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  static const auto op = handle<decltype(log_softmax)>("torch_ops::log_softmax");
  return op.call(input, dim, dtype);
}

at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  static const auto op = handle<decltype(softmax_backward)>("torch_ops::softmax_backward");
  return op.call(grad_output, output, dim);
}

at::Tensor log_softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  static const auto op = handle<decltype(log_softmax_backward)>("torch_ops::log_softmax_backward");
  return op.call(grad_output, output, dim);
}

at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing) {
  static const auto op = handle<decltype(cross_entropy)>("torch_ops::cross_entropy");
  return op.call(input, target, weight, reduction, ignore_index, label_smoothing);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_entropy_forward(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing) {
  static const auto op = handle<decltype(cross_entropy_forward)>("torch_ops::cross_entropy_forward");
  return op.call(input, target, weight, reduction, ignore_index, label_smoothing);
}

at::Tensor cross_entropy_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing, const at::Tensor& row_max, const at::Tensor& log_sum, const at::Tensor& total_weight) {
  static const auto op = handle<decltype(cross_entropy_backward)>("torch_ops::cross_entropy_backward");
  return op.call(grad_output, input, target, weight, reduction, ignore_index, label_smoothing, row_max, log_sum, total_weight);
}

at::Tensor cross_entropy_target_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction, double label_smoothing) {
  static const auto op = handle<decltype(cross_entropy_target_backward)>("torch_ops::cross_entropy_target_backward");
  return op.call(grad_output, input, target, weight, reduction, label_smoothing);
}

at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias, int64_t ignore_index, int64_t reduction, double label_smoothing, std::optional<int64_t> chunk_size, std::optional<at::ScalarType> out_dtype) {
  static const auto op = handle<decltype(linear_cross_entropy)>("torch_ops::linear_cross_entropy");
  return op.call(input, weight, target, bias, ignore_index, reduction, label_smoothing, chunk_size, out_dtype);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_cross_entropy_chunked(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& grad_output, int64_t ignore_index, int64_t reduction, double label_smoothing, int64_t chunk_size, std::array<bool, 3> output_mask, std::optional<at::ScalarType> out_dtype) {
  static const auto op = handle<decltype(linear_cross_entropy_chunked)>("torch_ops::linear_cross_entropy_chunked");
  return op.call(input, weight, target, bias, grad_output, ignore_index, reduction, label_smoothing, chunk_size, output_mask, out_dtype);
}

// norm

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps) {
  static const auto op = handle<decltype(layer_norm)>("torch_ops::layer_norm");
  return op.call(input, normalized_shape, weight, bias, eps);
}

std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  static const auto op = handle<decltype(rms_norm)>("torch_ops::rms_norm");
  return op.call(input, normalized_shape, weight, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias, double eps) {
  static const auto op = handle<decltype(add_layer_norm)>("torch_ops::add_layer_norm");
  return op.call(input, residual, normalized_shape, weight, bias, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  static const auto op = handle<decltype(add_rms_norm)>("torch_ops::add_rms_norm");
  return op.call(input, residual, normalized_shape, weight, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward(const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& mean, const at::Tensor& rstd, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& grad_extra, double eps, std::array<bool, 3> output_mask) {
  static const auto op = handle<decltype(norm_backward)>("torch_ops::norm_backward");
  return op.call(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps, output_mask);
}

// attention

at::Tensor attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed) {
  static const auto op = handle<decltype(attention)>("torch_ops::attention");
  return op.call(query, key, value, attn_mask, dropout_p, is_causal, scale, seed);
}

std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed) {
  static const auto op = handle<decltype(attention_forward)>("torch_ops::attention_forward");
  return op.call(query, key, value, attn_mask, dropout_p, is_causal, scale, seed);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_backward(const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, const std::optional<at::Tensor>& attn_mask, const at::Tensor& output, const at::Tensor& lse, double dropout_p, bool is_causal, double scale, const std::optional<at::Tensor>& seed, std::array<bool, 4> output_mask) {
  static const auto op = handle<decltype(attention_backward)>("torch_ops::attention_backward");
  return op.call(grad_output, query, key, value, attn_mask, output, lse, dropout_p, is_causal, scale, seed, output_mask);
}

}  // namespace torch_ops::ops
