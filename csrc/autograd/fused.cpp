// Autograd for the fused family, at the Autograd dispatch key. The node's backward is the
// formula of csrc/fused.cpp (fused::backward), made of dispatcher ops that have autograd
// of their own, so double backward works: fused_linear_act_grad below falls back to the
// activation family's differentiable backward ops when its inputs require grad.
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "torch_ops/autocast.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/fused.h"
#include "torch_ops/ops.h"

namespace torch_ops::fused {
namespace {

using activation::Act;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// act(x W^T + b); act_code is -1 (None) or an activation::Act. One node class with and
// one without bias (an autograd Function's inputs must be defined tensors).
// Saved for the backward:
//   None:  x if W needs a gradient, W if x does (as linear);
//   relu:  the same and the output (relu's gradient is taken from its result);
//   gelu / gelu_tanh / silu: the pre-activation, and x, W, b (the double backward
//          recomputes the pre-activation from them to differentiate through it).
template <bool HasBias>
struct FusedLinearNode : torch::autograd::Function<FusedLinearNode<HasBias>> {
  template <typename... Bias>
  static at::Tensor forward(AutogradContext* ctx, int64_t act_code, const at::Tensor& input,
                            const at::Tensor& weight, const Bias&... bias) {
    const std::optional<Act> act = act_code < 0 ? std::nullopt : std::optional<Act>(static_cast<Act>(act_code));
    ctx->saved_data["act"] = act_code;
    const bool smooth = act.has_value() && needs_preact(*act);
    std::optional<at::Tensor> b;
    at::Tensor b_saved;
    if constexpr (HasBias) {
      b = (bias, ...);
      b_saved = *b;
    }
    at::Tensor out, pre;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      if (smooth) {
        std::tie(out, pre) = ops::fused_linear_preact(input, weight, b, activation_name(*act));
      } else {
        out = ops::fused_linear(input, weight, b,
                                act.has_value() ? std::optional<c10::string_view>(activation_name(*act)) : std::nullopt);
      }
    }
    if (smooth) {
      ctx->save_for_backward({input, weight, b_saved, pre});
    } else {
      // The output is saved once the node is attached to it (custom_function saves at the
      // end of apply), so it is recorded as this node's output: no reference cycle.
      ctx->save_for_backward({weight.requires_grad() ? input : at::Tensor(),
                              input.requires_grad() ? weight : at::Tensor(), at::Tensor(),
                              act.has_value() ? out : at::Tensor()});
    }
    return out;
  }

  // grads for (act_code, input, weight[, bias]); needs_input_grad counts the tensors only.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t act_code = ctx->saved_data["act"].toInt();
    const std::optional<Act> act = act_code < 0 ? std::nullopt : std::optional<Act>(static_cast<Act>(act_code));
    const auto g = fused::backward(grads[0], saved[0], saved[1], saved[2], saved[3], act,
                                   {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                    HasBias && ctx->needs_input_grad(2)});
    if constexpr (HasBias) {
      return {at::Tensor(), g[0], g[1], g[2]};
    } else {
      return {at::Tensor(), g[0], g[1]};
    }
  }
};

at::Tensor fused_linear_autograd(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, std::optional<c10::string_view> activation) {
  const auto act = parse_activation(activation, "fused_linear");
  const at::Tensor b = bias.value_or(at::Tensor());
  if (!any_requires_grad("fused_linear", {&input, &weight, &b})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::fused_linear(input, weight, bias, activation);
  }
  const int64_t code = act.has_value() ? static_cast<int64_t>(*act) : int64_t(-1);
  if (b.defined()) return FusedLinearNode<true>::apply(code, input, weight, b);
  return FusedLinearNode<false>::apply(code, input, weight);
}

// (grad_pre, grad_bias). Below autograd: the fused kernel. With inputs that require grad
// (a double backward): the same values from the activation family's backward ops and
// linear's bias reduction, which are differentiable.
std::tuple<at::Tensor, at::Tensor> act_grad_autograd(const at::Tensor& grad_output, const at::Tensor& saved,
                                                     c10::string_view activation, bool bias) {
  const auto act = parse_activation(activation, "fused_linear_act_grad");
  if (!any_requires_grad("fused_linear_act_grad", {&grad_output, &saved})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::fused_linear_act_grad(grad_output, saved, activation, bias);
  }
  TORCH_CHECK(act.has_value(), "torch_ops.fused_linear_act_grad: expected an activation");
  at::Tensor grad_pre;
  switch (*act) {
    case Act::Relu:
      grad_pre = ops::relu_backward(grad_output, saved);
      break;
    case Act::GeluErf:
      grad_pre = ops::gelu_backward(grad_output, saved, "none");
      break;
    case Act::GeluTanh:
      grad_pre = ops::gelu_backward(grad_output, saved, "tanh");
      break;
    case Act::Silu:
      grad_pre = ops::silu_backward(grad_output, saved);
      break;
    default:
      TORCH_INTERNAL_ASSERT(false, "torch_ops.fused_linear_act_grad: not a fused activation");
  }
  at::Tensor grad_bias = bias ? ops::linear_grad_bias(grad_pre) : at::empty({0}, grad_output.options());
  return {grad_pre, grad_bias};
}

// Autocast: as linear, the autocast dtype (the lower precision of the device).
template <c10::DeviceType device>
at::Tensor fused_linear_autocast(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, std::optional<c10::string_view> activation) {
  const autocast::Off off;
  using autocast::lower;
  return ops::fused_linear(lower<device>(input), lower<device>(weight), lower<device>(bias), activation);
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("fused_linear", &fused_linear_autograd);
  m.impl("fused_linear_act_grad", &act_grad_autograd);
}

// (The ops of the forward node and of the backward run in their inputs' dtypes.)
template <c10::DeviceType device>
void register_autocast(torch::Library& m) {
  m.impl("fused_linear", &fused_linear_autocast<device>);
  m.impl("fused_linear_preact", autocast::passthrough());
  m.impl("fused_linear_act_grad", autocast::passthrough());
}

TORCH_LIBRARY_IMPL(torch_ops, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(torch_ops, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

}  // namespace torch_ops::fused
