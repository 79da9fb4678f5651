// Autograd for the attention family, at the Autograd dispatch key (C++). The forward node
// saves the inputs, the output and the per-row log-sum-exp (O(L) per head, no L x S
// matrix); its backward is the attention_backward dispatcher op (the kernels recompute the
// scores tile by tile). attention_backward has autograd of its own, whose backward
// differentiates the same gradient written with differentiable ops
// (attention::attention_backward_composite: the scores materialised, torch_ops' softmax),
// so derivatives of any order exist (gradgradcheck). The dropout mask is regenerated from
// the seed at every level, never stored.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "torch_ops/attention.h"
#include "torch_ops/autocast.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/ops.h"

namespace torch_ops::attention {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptT = std::optional<at::Tensor>;


void save_args(AutogradContext* ctx, double dropout_p, bool is_causal, double scale, bool has_mask) {
  ctx->saved_data["p"] = dropout_p;
  ctx->saved_data["causal"] = is_causal;
  ctx->saved_data["scale"] = scale;
  ctx->saved_data["has_mask"] = has_mask;
}

struct AttentionNode : torch::autograd::Function<AttentionNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const OptT& mask, double dropout_p, bool is_causal, double scale, const OptT& seed) {
    ctx->set_materialize_grads(false);
    at::Tensor out, lse;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(out, lse) = ops::attention_forward(q, k, v, mask, dropout_p, is_causal, scale, seed);
    }
    ctx->save_for_backward({q, k, v, val(mask), out, lse, val(seed)});
    save_args(ctx, dropout_p, is_causal, scale, mask.has_value());
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const bool has_mask = ctx->saved_data["has_mask"].toBool();
    // needs_input_grad counts the tensor arguments given: q, k, v, [mask], [seed].
    const std::array<bool, 4> need{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                   has_mask && ctx->needs_input_grad(3)};
    variable_list r(8);
    if (!grads[0].defined() || !(need[0] || need[1] || need[2] || need[3])) return r;
    auto [gq, gk, gv, gm] = ops::attention_backward(
        grads[0], s[0], s[1], s[2], opt(s[3]), s[4], s[5], ctx->saved_data["p"].toDouble(),
        ctx->saved_data["causal"].toBool(), ctx->saved_data["scale"].toDouble(), opt(s[6]), need);
    const at::Tensor* g[4] = {&gq, &gk, &gv, &gm};
    for (int i = 0; i < 4; ++i)
      if (need[i]) r[i] = *g[i];
    return r;
  }
};

// attention_backward as a node: the kernels forward; backward by differentiating the
// composite form of the same gradient (a reentrant autograd.grad over it).
struct AttentionBackwardNode : torch::autograd::Function<AttentionBackwardNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& q,
                               const at::Tensor& k, const at::Tensor& v, const OptT& mask, const at::Tensor& out,
                               const at::Tensor& lse, double dropout_p, bool is_causal, double scale,
                               const OptT& seed, std::array<bool, 4> output_mask) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad_out, q, k, v, val(mask), val(seed)});
    save_args(ctx, dropout_p, is_causal, scale, mask.has_value());
    ctx->saved_data["mask"] = std::vector<bool>{output_mask[0], output_mask[1], output_mask[2], output_mask[3]};
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gq, gk, gv, gm] =
        ops::attention_backward(grad_out, q, k, v, mask, out, lse, dropout_p, is_causal, scale, seed, output_mask);
    return {gq, gk, gv, gm};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const bool has_mask = ctx->saved_data["has_mask"].toBool();
    const auto ml = ctx->saved_data["mask"].toBoolList();
    std::array<bool, 4> mask{ml[0], ml[1], ml[2], ml[3]};
    for (int i = 0; i < 4; ++i) mask[i] = mask[i] && grads[i].defined();
    // Inputs: grad_out, q, k, v, [mask], out, lse, [seed]. out and lse are functions of
    // q, k, v; the composite recomputes them, so the gradient reaches q, k, v directly
    // and none is returned for out and lse.
    const int edge[5] = {0, 1, 2, 3, has_mask ? 4 : -1};
    const int slot[5] = {0, 1, 2, 3, 4};
    std::vector<at::Tensor> wrt;
    std::vector<int> wrt_slot;
    for (int i = 0; i < 5; ++i) {
      if (edge[i] >= 0 && s[i].defined() && s[i].requires_grad() && ctx->needs_input_grad(edge[i])) {
        wrt.push_back(s[i]);
        wrt_slot.push_back(slot[i]);
      }
    }
    variable_list result(12);
    if (wrt.empty() || !(mask[0] || mask[1] || mask[2] || mask[3])) return result;
    const bool create_graph = at::GradMode::is_enabled();
    variable_list outs, gouts;
    {
      at::AutoGradMode enable(true);
      const auto c = attention_backward_composite(s[0], s[1], s[2], s[3], s[4], ctx->saved_data["p"].toDouble(),
                                                  ctx->saved_data["causal"].toBool(),
                                                  ctx->saved_data["scale"].toDouble(), opt(s[5]), mask);
      for (int i = 0; i < 4; ++i) {
        if (c[i].defined() && c[i].requires_grad()) {
          outs.push_back(c[i]);
          gouts.push_back(grads[i]);
        }
      }
    }
    if (outs.empty()) return result;
    const auto g = torch::autograd::grad(outs, wrt, gouts, /*retain_graph=*/true, create_graph,
                                         /*allow_unused=*/true);
    for (size_t i = 0; i < wrt.size(); ++i) result[wrt_slot[i]] = g[i];
    return result;
  }
};

at::Tensor attention_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
                              double dropout_p, bool is_causal, double scale, const OptT& seed) {
  if (!any_requires_grad("scaled_dot_product_attention", {&q, &k, &v, &val(mask)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::attention(q, k, v, mask, dropout_p, is_causal, scale, seed);
  }
  return AttentionNode::apply(q, k, v, mask, dropout_p, is_causal, scale, seed)[0];
}

std::tuple<at::Tensor, at::Tensor> attention_forward_autograd(const at::Tensor& q, const at::Tensor& k,
                                                              const at::Tensor& v, const OptT& mask, double dropout_p,
                                                              bool is_causal, double scale, const OptT& seed) {
  // What autograd saves, not a differentiable function of its own: called with grad
  // mode on and inputs that require grad, the results are plain tensors.
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::attention_forward(q, k, v, mask, dropout_p, is_causal, scale, seed);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
    const at::Tensor& out, const at::Tensor& lse, double dropout_p, bool is_causal, double scale, const OptT& seed,
    std::array<bool, 4> output_mask) {
  if (!any_requires_grad("scaled_dot_product_attention", {&grad_out, &q, &k, &v, &val(mask)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::attention_backward(grad_out, q, k, v, mask, out, lse, dropout_p, is_causal, scale, seed,
                                   output_mask);
  }
  auto o = AttentionBackwardNode::apply(grad_out, q, k, v, mask, out, lse, dropout_p, is_causal, scale, seed,
                                        output_mask);
  return {o[0], o[1], o[2], o[3]};
}

// Autocast: as torch's scaled_dot_product_attention on either device, the lower precision
// (query, key, value and a floating mask cast; the seed is an integer tensor and stays).
template <c10::DeviceType device>
at::Tensor sdpa_autocast(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
                         double dropout_p, bool is_causal, std::optional<double> scale, bool enable_gqa,
                         const OptT& seed) {
  const autocast::Off off;
  return scaled_dot_product_attention(autocast::lower<device>(q), autocast::lower<device>(k),
                                      autocast::lower<device>(v), autocast::lower<device>(mask), dropout_p, is_causal,
                                      scale, enable_gqa, seed);
}

template <c10::DeviceType device>
at::Tensor attention_autocast(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
                              double dropout_p, bool is_causal, double scale, const OptT& seed) {
  const autocast::Off off;
  return ops::attention(autocast::lower<device>(q), autocast::lower<device>(k), autocast::lower<device>(v),
                        autocast::lower<device>(mask), dropout_p, is_causal, scale, seed);
}

template <c10::DeviceType device>
void register_autocast(torch::Library& m) {
  m.impl("scaled_dot_product_attention", &sdpa_autocast<device>);
  m.impl("attention", &attention_autocast<device>);
  // what autograd saves and calls: the inputs' own dtypes
  m.impl("attention_forward", autocast::passthrough());
  m.impl("attention_backward", autocast::passthrough());
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(torch_ops, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("attention", &attention_autograd);
  m.impl("attention_forward", &attention_forward_autograd);
  m.impl("attention_backward", &attention_backward_autograd);
}

TORCH_LIBRARY_IMPL(torch_ops, CompositeImplicitAutograd, m) {
  m.impl("scaled_dot_product_attention", &scaled_dot_product_attention);
}

}  // namespace torch_ops::attention
