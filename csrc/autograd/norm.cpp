// Autograd for the normalization family, at the Autograd dispatch key (C++). The forward
// node's backward is the norm_backward dispatcher op (the fused kernels); norm_backward
// has autograd of its own here, whose backward differentiates the same gradient written
// as differentiable ATen arithmetic (norm::norm_backward_composite, statistics recomputed
// from the input), so derivatives of any order exist (gradgradcheck).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "torch_ops/autocast.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/norm.h"
#include "torch_ops/ops.h"

namespace torch_ops::norm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptT = std::optional<at::Tensor>;


// The forward of all four ops: Rms (no mean, no bias), Add (a residual, and input +
// residual as a second differentiable output). Outputs: y, [sum], [mean], rstd.
template <bool Rms, bool Add>
struct NormNode : torch::autograd::Function<NormNode<Rms, Add>> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const OptT& residual,
                               const OptT& weight, const OptT& bias, at::IntArrayRef normalized_shape, double eps) {
    ctx->set_materialize_grads(false);
    variable_list out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      if constexpr (Rms && Add) {
        auto [y, s, r] = ops::add_rms_norm(input, *residual, normalized_shape, weight, eps);
        out = {y, s, r};
      } else if constexpr (Rms) {
        auto [y, r] = ops::rms_norm(input, normalized_shape, weight, eps);
        out = {y, r};
      } else if constexpr (Add) {
        auto [y, s, m, r] = ops::add_layer_norm(input, *residual, normalized_shape, weight, bias, eps);
        out = {y, s, m, r};
      } else {
        auto [y, m, r] = ops::layer_norm(input, normalized_shape, weight, bias, eps);
        out = {y, m, r};
      }
    }
    const at::Tensor& x = Add ? out[1] : input;  // the normalised tensor: input (+ residual)
    const at::Tensor mean = Rms ? at::Tensor() : out[Add ? 2 : 1];
    const at::Tensor& rstd = out.back();
    ctx->save_for_backward({x, val(weight), mean, rstd});
    ctx->saved_data["ns"] = normalized_shape;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["bias_dtype"] = bias.has_value() ? static_cast<int64_t>(bias->scalar_type()) : int64_t(-1);
    // needs_input_grad counts the tensor arguments given (absent optionals are skipped).
    int64_t k = Add ? 2 : 1;
    const int64_t w_edge = weight.has_value() ? k++ : -1;
    const int64_t b_edge = bias.has_value() ? k++ : -1;
    ctx->saved_data["edges"] = std::vector<int64_t>{w_edge, b_edge};
    if (!Rms) ctx->mark_non_differentiable({mean});
    ctx->mark_non_differentiable({rstd});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &rstd = saved[3];
    const at::Tensor& gy = grads[0];
    const at::Tensor gsum = Add ? grads[1] : at::Tensor();
    const auto edges = ctx->saved_data["edges"].toIntVector();
    const bool need_in = ctx->needs_input_grad(0), need_res = Add && ctx->needs_input_grad(1);
    const bool need_x = need_in || need_res;
    const bool need_w = edges[0] >= 0 && ctx->needs_input_grad(edges[0]);
    const bool need_b = !Rms && edges[1] >= 0 && ctx->needs_input_grad(edges[1]);
    at::Tensor dx, dw, db;
    if (gy.defined()) {
      const auto ns = ctx->saved_data["ns"].toIntVector();
      std::tie(dx, dw, db) = ops::norm_backward(gy, x, opt(mean), rstd, ns, opt(weight), opt(gsum),
                                                ctx->saved_data["eps"].toDouble(), {need_x, need_w, need_b});
      if (!need_x) dx = at::Tensor();
      if (!need_w) dw = at::Tensor();
      if (!need_b) {
        db = at::Tensor();
      } else {
        const auto bias_dtype = static_cast<at::ScalarType>(ctx->saved_data["bias_dtype"].toInt());
        if (db.scalar_type() != bias_dtype) db = db.to(bias_dtype);
      }
    } else if (need_x) {
      dx = gsum;  // only input + residual was used
    }
    // (input, residual, weight, bias, normalized_shape, eps)
    return {need_in ? dx : at::Tensor(), need_res ? dx : at::Tensor(), dw, db, at::Tensor(), at::Tensor()};
  }
};

// norm_backward as a node: the fused kernels forward; backward by differentiating the
// composite form of the same gradient (a reentrant autograd.grad over it).
struct NormBackwardNode : torch::autograd::Function<NormBackwardNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& input,
                               const OptT& mean, const at::Tensor& rstd, at::IntArrayRef normalized_shape,
                               const OptT& weight, const OptT& grad_extra, double eps,
                               std::array<bool, 3> output_mask) {
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad_output, input, val(weight), val(grad_extra)});
    ctx->saved_data["k"] = static_cast<int64_t>(normalized_shape.size());
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["rms"] = !mean.has_value();
    ctx->saved_data["mask"] = std::vector<bool>{output_mask[0], output_mask[1], output_mask[2]};
    // needs_input_grad counts the tensor arguments given (absent optionals are skipped):
    // the edges of grad_output, input, weight, grad_extra.
    int64_t k = mean.has_value() ? 4 : 3;
    const int64_t w_edge = weight.has_value() ? k++ : -1;
    const int64_t e_edge = grad_extra.has_value() ? k++ : -1;
    ctx->saved_data["edges"] = std::vector<int64_t>{0, 1, w_edge, e_edge};
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [dx, dw, db] = ops::norm_backward(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps,
                                           output_mask);
    return {dx, dw, db};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool create_graph = at::GradMode::is_enabled();
    const auto mask_list = ctx->saved_data["mask"].toBoolList();
    std::array<bool, 3> mask{mask_list[0], mask_list[1], mask_list[2]};
    // Which outputs carry a gradient; which inputs want one. (grad_output, input, mean,
    // rstd, normalized_shape, weight, grad_extra, eps, output_mask)
    const int input_slot[4] = {0, 1, 5, 6};
    std::vector<at::Tensor> wrt;
    std::vector<int> wrt_slot;
    const auto edges = ctx->saved_data["edges"].toIntVector();
    for (int k = 0; k < 4; ++k) {
      if (saved[k].defined() && saved[k].requires_grad() && edges[k] >= 0 && ctx->needs_input_grad(edges[k])) {
        wrt.push_back(saved[k]);
        wrt_slot.push_back(input_slot[k]);
      }
    }
    variable_list result(9);
    for (int k = 0; k < 3; ++k) mask[k] = mask[k] && grads[k].defined();
    if (wrt.empty() || !(mask[0] || mask[1] || mask[2])) return result;
    variable_list outs, gouts;
    {
      at::AutoGradMode enable(true);
      const auto c = norm_backward_composite(saved[0], saved[1], ctx->saved_data["rms"].toBool(),
                                             ctx->saved_data["k"].toInt(), saved[2], saved[3],
                                             ctx->saved_data["eps"].toDouble(), mask);
      for (int k = 0; k < 3; ++k) {
        if (c[k].defined() && c[k].requires_grad()) {
          outs.push_back(c[k]);
          gouts.push_back(grads[k]);
        }
      }
    }
    if (outs.empty()) return result;
    const auto g = torch::autograd::grad(outs, wrt, gouts, /*retain_graph=*/true, create_graph,
                                         /*allow_unused=*/true);
    for (size_t k = 0; k < wrt.size(); ++k) result[wrt_slot[k]] = g[k];
    return result;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_autograd(const at::Tensor& input,
                                                                   at::IntArrayRef normalized_shape,
                                                                   const OptT& weight, const OptT& bias, double eps) {
  if (!any_requires_grad("layer_norm", {&input, &val(weight), &val(bias)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::layer_norm(input, normalized_shape, weight, bias, eps);
  }
  auto o = NormNode<false, false>::apply(input, OptT(), weight, bias, normalized_shape, eps);
  return {o[0], o[1], o[2]};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_autograd(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                                     const OptT& weight, std::optional<double> eps) {
  if (!any_requires_grad("rms_norm", {&input, &val(weight)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::rms_norm(input, normalized_shape, weight, eps);
  }
  TORCH_CHECK(input.defined(), "torch_ops.rms_norm: expected input to be a tensor, got an undefined tensor");
  auto o = NormNode<true, false>::apply(input, OptT(), weight, OptT(), normalized_shape,
                                        rms_eps(input.scalar_type(), eps));
  return {o[0], o[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_autograd(
    const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const OptT& weight,
    const OptT& bias, double eps) {
  if (!any_requires_grad("add_layer_norm", {&input, &residual, &val(weight), &val(bias)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::add_layer_norm(input, residual, normalized_shape, weight, bias, eps);
  }
  auto o = NormNode<false, true>::apply(input, OptT(residual), weight, bias, normalized_shape, eps);
  return {o[0], o[1], o[2], o[3]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_autograd(const at::Tensor& input,
                                                                     const at::Tensor& residual,
                                                                     at::IntArrayRef normalized_shape,
                                                                     const OptT& weight, std::optional<double> eps) {
  if (!any_requires_grad("add_rms_norm", {&input, &residual, &val(weight)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::add_rms_norm(input, residual, normalized_shape, weight, eps);
  }
  TORCH_CHECK(input.defined(), "torch_ops.add_rms_norm: expected input to be a tensor, got an undefined tensor");
  auto o = NormNode<true, true>::apply(input, OptT(residual), weight, OptT(), normalized_shape,
                                       rms_eps(input.scalar_type(), eps));
  return {o[0], o[1], o[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& input, const OptT& mean, const at::Tensor& rstd,
    at::IntArrayRef normalized_shape, const OptT& weight, const OptT& grad_extra, double eps,
    std::array<bool, 3> output_mask) {
  if (!any_requires_grad("norm_backward", {&grad_output, &input, &val(weight), &val(grad_extra)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::norm_backward(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps,
                              output_mask);
  }
  auto o = NormBackwardNode::apply(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps,
                                   output_mask);
  return {o[0], o[1], o[2]};
}

// Autocast. PyTorch's policy runs layer_norm and rms_norm in float32 on CUDA (fp32: the
// floating inputs cast to float32) and does not list them on CPU (they run in the input's
// dtype there, float32 weights with a bfloat16 input included). The add variants follow
// their composition norm(x + r), x + r: x + r is not an autocast op, so the sum keeps the
// inputs' dtype (only the norm runs in float32 on CUDA; it normalises the float32 sum, not
// the sum rounded to the inputs' dtype first).
using autocast::fp32;

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_fp32(const at::Tensor& input,
                                                               at::IntArrayRef normalized_shape, const OptT& weight,
                                                               const OptT& bias, double eps) {
  const autocast::Off off;
  return ops::layer_norm(fp32<device>(input), normalized_shape, fp32<device>(weight), fp32<device>(bias), eps);
}

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor> rms_norm_fp32(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                                 const OptT& weight, std::optional<double> eps) {
  const autocast::Off off;
  return ops::rms_norm(fp32<device>(input), normalized_shape, fp32<device>(weight), eps);
}

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_fp32(
    const at::Tensor& input, const at::Tensor& residual, at::IntArrayRef normalized_shape, const OptT& weight,
    const OptT& bias, double eps) {
  const autocast::Off off;
  auto [y, s, m, r] = ops::add_layer_norm(fp32<device>(input), fp32<device>(residual), normalized_shape,
                                          fp32<device>(weight), fp32<device>(bias), eps);
  return {y, s.to(at::result_type(input, residual)), m, r};
}

template <c10::DeviceType device>
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fp32(const at::Tensor& input, const at::Tensor& residual,
                                                                 at::IntArrayRef normalized_shape, const OptT& weight,
                                                                 std::optional<double> eps) {
  const autocast::Off off;
  auto [y, s, r] =
      ops::add_rms_norm(fp32<device>(input), fp32<device>(residual), normalized_shape, fp32<device>(weight), eps);
  return {y, s.to(at::result_type(input, residual)), r};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, AutocastCPU, m) {
  for (const char* op : {"layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "norm_backward"})
    m.impl(op, autocast::passthrough());
}

TORCH_LIBRARY_IMPL(torch_ops, AutocastCUDA, m) {
  constexpr auto cuda = c10::DeviceType::CUDA;
  m.impl("layer_norm", &layer_norm_fp32<cuda>);
  m.impl("rms_norm", &rms_norm_fp32<cuda>);
  m.impl("add_layer_norm", &add_layer_norm_fp32<cuda>);
  m.impl("add_rms_norm", &add_rms_norm_fp32<cuda>);
  m.impl("norm_backward", autocast::passthrough());
}

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("layer_norm", &layer_norm_autograd);
  m.impl("rms_norm", &rms_norm_autograd);
  m.impl("add_layer_norm", &add_layer_norm_autograd);
  m.impl("add_rms_norm", &add_rms_norm_autograd);
  m.impl("norm_backward", &norm_backward_autograd);
}

}  // namespace torch_ops::norm
