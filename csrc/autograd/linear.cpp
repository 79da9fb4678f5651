// Autograd for the linear family, at the Autograd dispatch key (C++: no Python on the
// eager path). Every backward is made of the family's dispatcher ops, which have
// autograd of their own here, so derivatives of any order exist (gradgradcheck).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "torch_ops/autocast.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/linear.h"
#include "torch_ops/ops.h"

namespace torch_ops::linear {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = x W^T + b
// (One node class with and one without bias: no per-node flag in ctx->saved_data, whose
// string-keyed map costs a few hundred ns on every small call.)
template <bool HasBias>
struct LinearNode : torch::autograd::Function<LinearNode<HasBias>> {
  template <typename... Bias>
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const Bias&... bias) {
    // Save only what the requested gradients need: x for dW, W for dx. (In forward, "needs
    // a gradient" is requires_grad: ctx->needs_input_grad() consults the running graph
    // task, which is wrong for nodes made during a backward pass with create_graph.)
    const bool need_input = input.requires_grad(), need_weight = weight.requires_grad();
    ctx->save_for_backward({need_weight ? input : at::Tensor(), need_input ? weight : at::Tensor()});
    at::AutoDispatchBelowADInplaceOrView guard;
    if constexpr (HasBias) {
      return ops::linear(input, weight, bias...);
    } else {
      return ops::linear(input, weight, std::nullopt);
    }
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto g = linear::backward(grads[0], saved[0], saved[1],
                              {ctx->needs_input_grad(0), ctx->needs_input_grad(1), HasBias && ctx->needs_input_grad(2)});
    if constexpr (HasBias) {
      return {g[0], g[1], g[2]};
    } else {
      return {g[0], g[1]};
    }
  }
};

// G = gy^T x (summed over the leading dims): dgy = x gG^T = linear(x, gG), dx = gy gG = linear(gy, gG^T)
struct GradWeightNode : torch::autograd::Function<GradWeightNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& input) {
    ctx->save_for_backward({input.requires_grad() ? grad_output : at::Tensor(),
                            grad_output.requires_grad() ? input : at::Tensor()});
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear_grad_weight(grad_output, input);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& gG = grads[0];
    at::Tensor d_grad_output, d_input;
    if (ctx->needs_input_grad(0)) d_grad_output = ops::linear(saved[1], gG, std::nullopt);
    if (ctx->needs_input_grad(1)) d_input = ops::linear(saved[0], gG.t(), std::nullopt);
    return {d_grad_output, d_input};
  }
};

// gb = sum of gy over the leading dims: its gradient broadcasts back (a view, no copy).
struct GradBiasNode : torch::autograd::Function<GradBiasNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output) {
    ctx->saved_data["sizes"] = grad_output.sym_sizes();
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear_grad_bias(grad_output);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {grads[0].expand_symint(ctx->saved_data["sizes"].toSymIntVector())};
  }
};

// The Autograd-key kernels. When no input needs a gradient, skip the node entirely.
at::Tensor linear_autograd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const at::Tensor none;
  if (!any_requires_grad("linear", {&input, &weight, bias.has_value() ? &*bias : &none})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear(input, weight, bias);
  }
  if (bias.has_value() && bias->defined()) return LinearNode<true>::apply(input, weight, *bias);
  return LinearNode<false>::apply(input, weight);
}

at::Tensor grad_weight_autograd(const at::Tensor& grad_output, const at::Tensor& input) {
  if (!any_requires_grad("linear_grad_weight", {&grad_output, &input})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear_grad_weight(grad_output, input);
  }
  return GradWeightNode::apply(grad_output, input);
}

at::Tensor grad_bias_autograd(const at::Tensor& grad_output) {
  if (!any_requires_grad("linear_grad_bias", {&grad_output})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear_grad_bias(grad_output);
  }
  return GradBiasNode::apply(grad_output);
}

// Autocast: linear runs in the autocast dtype, as torch's linear does (cast to the lower
// precision, then the call below autocast). With autocast excluded for the whole call,
// the GEMMs inside our kernels keep the dtype of their inputs, as the fake kernels say.
template <c10::DeviceType device>
at::Tensor linear_autocast(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const autocast::Off off;
  using autocast::lower;
  return ops::linear(lower<device>(input), lower<device>(weight), lower<device>(bias));
}

}  // namespace

// (The gradient ops run in their inputs' dtype: only autocast is switched off.)
TORCH_LIBRARY_IMPL(torch_ops, AutocastCPU, m) {
  m.impl("linear", &linear_autocast<c10::DeviceType::CPU>);
  m.impl("linear_grad_weight", autocast::passthrough());
  m.impl("linear_grad_bias", autocast::passthrough());
}

TORCH_LIBRARY_IMPL(torch_ops, AutocastCUDA, m) {
  m.impl("linear", &linear_autocast<c10::DeviceType::CUDA>);
  m.impl("linear_grad_weight", autocast::passthrough());
  m.impl("linear_grad_bias", autocast::passthrough());
}

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("linear", &linear_autograd);
  m.impl("linear_grad_weight", &grad_weight_autograd);
  m.impl("linear_grad_bias", &grad_bias_autograd);
}

}  // namespace torch_ops::linear
