// Autograd for the softmax family, at the Autograd dispatch key. Every backward is made of
// dispatcher ops or ATen ops with autograd of their own, so derivatives of any order exist:
//   softmax / log_softmax         -> <op>_backward(grad, output, dim)
//   <op>_backward                 -> itself (softmax) or ATen ops (log_softmax) for grad,
//                                    ATen elementwise ops and sums for output
//   cross_entropy                 -> cross_entropy_backward (one pass over the logits, from
//                                    the log-sum-exp the forward saved) and, for probability
//                                    targets, cross_entropy_target_backward
//   cross_entropy_backward        -> the gradient of cross_entropy_composite (log_softmax and
//                                    ATen ops), differentiated again: more memory, same values
//   linear_cross_entropy          -> the gradients computed with the loss, chunk by chunk
//                                    (reduction mean / sum: scaled by grad_output in place the
//                                    first time), or recomputed chunk by chunk (reduction none,
//                                    or a second backward); under create_graph, the gradient
//                                    of linear_cross_entropy_composite (linear + cross_entropy)
#include <ATen/ATen.h>
#include <ATen/core/Reduction.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "torch_ops/autocast.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/ops.h"
#include "torch_ops/softmax.h"

namespace torch_ops::softmax {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ------------------------------------------------------------------------------ softmax

template <bool kLog>
struct SoftmaxNode : torch::autograd::Function<SoftmaxNode<kLog>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t dim) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = kLog ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
    }
    ctx->save_for_backward({y});
    ctx->saved_data["dim"] = dim;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    const int64_t dim = ctx->saved_data["dim"].toInt();
    return {kLog ? ops::log_softmax_backward(grads[0], y, dim) : ops::softmax_backward(grads[0], y, dim), Tensor()};
  }
};

// gx = <op>_backward(g, y). softmax: gx = y * (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g).
template <bool kLog>
struct SoftmaxBackwardNode : torch::autograd::Function<SoftmaxBackwardNode<kLog>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& y, int64_t dim) {
    ctx->save_for_backward({g, y});
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    return kLog ? ops::log_softmax_backward(g, y, dim) : ops::softmax_backward(g, y, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &y = saved[1], &gg = grads[0];
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const int64_t d = y.dim() == 0 ? 0 : dim;
    Tensor d_g, d_y;
    if (y.dim() == 0) {  // one element: the result is 0 whatever g and y are
      if (ctx->needs_input_grad(0)) d_g = at::zeros_like(g);
      if (ctx->needs_input_grad(1)) d_y = at::zeros_like(y);
      return {d_g, d_y, Tensor()};
    }
    if constexpr (kLog) {
      const auto e = y.exp();
      if (ctx->needs_input_grad(0)) d_g = gg - (gg * e).sum(d, true);
      if (ctx->needs_input_grad(1)) d_y = -gg * e * g.sum(d, true);
    } else {
      if (ctx->needs_input_grad(0)) d_g = ops::softmax_backward(gg, y, dim);
      if (ctx->needs_input_grad(1)) d_y = gg * (g - (g * y).sum(d, true)) - g * (gg * y).sum(d, true);
    }
    return {d_g, d_y, Tensor()};
  }
};

template <bool kLog>
Tensor softmax_autograd(const Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  // dtype: a differentiable cast first (the node's input is what its kernel reads).
  const Tensor x = dtype.has_value() && input.defined() && input.scalar_type() != *dtype ? input.to(*dtype) : input;
  if (!any_requires_grad(kLog ? "log_softmax" : "softmax", {&x})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return kLog ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
  }
  return SoftmaxNode<kLog>::apply(x, dim);
}

template <bool kLog>
Tensor softmax_backward_autograd(const Tensor& g, const Tensor& y, int64_t dim) {
  if (!any_requires_grad(kLog ? "log_softmax_backward" : "softmax_backward", {&g, &y})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return kLog ? ops::log_softmax_backward(g, y, dim) : ops::softmax_backward(g, y, dim);
  }
  return SoftmaxBackwardNode<kLog>::apply(g, y, dim);
}

// -------------------------------------------------------------------------- cross-entropy

struct CeParams {
  int64_t reduction, ignore_index;
  double label_smoothing;
};

void save_params(AutogradContext* ctx, const CeParams& p) {
  ctx->saved_data["reduction"] = p.reduction;
  ctx->saved_data["ignore_index"] = p.ignore_index;
  ctx->saved_data["label_smoothing"] = p.label_smoothing;
}
CeParams load_params(AutogradContext* ctx) {
  return {ctx->saved_data["reduction"].toInt(), ctx->saved_data["ignore_index"].toInt(),
          ctx->saved_data["label_smoothing"].toDouble()};
}

// (index: the weight's among the node's tensor inputs; an absent weight has none.)
void check_no_weight_grad(AutogradContext* ctx, int index, const char* op) {
  TORCH_CHECK(!ctx->needs_input_grad(index), "torch_ops.", op,
              ": the derivative for 'weight' (the class weights) is not implemented");
}

struct CrossEntropyNode : torch::autograd::Function<CrossEntropyNode> {
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& target,
                        const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index,
                        double label_smoothing) {
    Tensor loss, row_max, log_sum, total_weight;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(loss, row_max, log_sum, total_weight) =
          ops::cross_entropy_forward(input, target, weight, reduction, ignore_index, label_smoothing);
    }
    ctx->save_for_backward({input, target, val(weight)});
    ctx->saved_data["row_max"] = row_max;
    ctx->saved_data["log_sum"] = log_sum;
    ctx->saved_data["total_weight"] = total_weight;
    save_params(ctx, {reduction, ignore_index, label_smoothing});
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &target = saved[1], &weight = saved[2];
    const auto p = load_params(ctx);
    if (weight.defined()) check_no_weight_grad(ctx, 2, "cross_entropy");
    Tensor d_input, d_target;
    if (ctx->needs_input_grad(0))
      d_input = ops::cross_entropy_backward(grads[0], input, target, opt(weight), p.reduction, p.ignore_index,
                                            p.label_smoothing, ctx->saved_data["row_max"].toTensor(),
                                            ctx->saved_data["log_sum"].toTensor(),
                                            ctx->saved_data["total_weight"].toTensor());
    if (ctx->needs_input_grad(1))
      d_target = ops::cross_entropy_target_backward(grads[0], input, target, opt(weight), p.reduction,
                                                    p.label_smoothing);
    return {d_input, d_target, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// The gradients (of what `wanted` lists) of vjp = <d f(inputs) / d inputs, grad> at gg, where
// f's gradient is computed with a graph: the double backward of an op whose first backward
// has no graph of its own. create_graph follows the running backward.
variable_list grad_of_grad(const std::function<Tensor()>& f_grad, const variable_list& wanted, const Tensor& gg,
                           bool create_graph) {
  Tensor first = f_grad();
  return torch::autograd::grad({first}, wanted, {gg}, /*retain_graph=*/true, create_graph, /*allow_unused=*/true);
}

struct CrossEntropyBackwardNode : torch::autograd::Function<CrossEntropyBackwardNode> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad_output, const Tensor& input, const Tensor& target,
                        const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index,
                        double label_smoothing, const Tensor& row_max, const Tensor& log_sum,
                        const Tensor& total_weight) {
    ctx->save_for_backward({grad_output, input, target, val(weight)});
    save_params(ctx, {reduction, ignore_index, label_smoothing});
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::cross_entropy_backward(grad_output, input, target, weight, reduction, ignore_index,
                                       label_smoothing, row_max, log_sum, total_weight);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &input = saved[1], &target = saved[2], &weight = saved[3];
    const auto p = load_params(ctx);
    if (weight.defined()) check_no_weight_grad(ctx, 3, "cross_entropy_backward");
    const bool create_graph = at::GradMode::is_enabled();
    at::AutoGradMode enable(true);
    const Tensor x = input.requires_grad() ? input : input.detach().requires_grad_(true);
    variable_list wanted;
    std::vector<int> slot;
    const Tensor* candidates[3] = {&g, &x, &target};
    for (int i = 0; i < 3; ++i) {
      if (ctx->needs_input_grad(i) && candidates[i]->requires_grad()) {
        wanted.push_back(*candidates[i]);
        slot.push_back(i);
      }
    }
    variable_list out(10);  // (one per argument of forward)
    if (wanted.empty()) return out;
    const auto res = grad_of_grad(
        [&] {
          const auto loss =
              cross_entropy_composite(x, target, opt(weight), p.reduction, p.ignore_index, p.label_smoothing);
          return torch::autograd::grad({loss}, {x}, {g}, /*retain_graph=*/true, /*create_graph=*/true)[0];
        },
        wanted, grads[0], create_graph);
    for (size_t k = 0; k < slot.size(); ++k) out[slot[k]] = res[k];
    return out;
  }
};

Tensor cross_entropy_autograd(const Tensor& input, const Tensor& target, const std::optional<Tensor>& weight,
                              int64_t reduction, int64_t ignore_index, double label_smoothing) {
  const Tensor& w = val(weight);
  if (!any_requires_grad("cross_entropy", {&input, &target, &w})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing);
  }
  return CrossEntropyNode::apply(input, target, weight, reduction, ignore_index, label_smoothing);
}

Tensor cross_entropy_backward_autograd(const Tensor& grad_output, const Tensor& input, const Tensor& target,
                                       const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                       double label_smoothing, const Tensor& row_max, const Tensor& log_sum,
                                       const Tensor& total_weight) {
  const Tensor& w = val(weight);
  if (!any_requires_grad("cross_entropy_backward", {&grad_output, &input, &target, &w})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::cross_entropy_backward(grad_output, input, target, weight, reduction, ignore_index, label_smoothing,
                                       row_max, log_sum, total_weight);
  }
  return CrossEntropyBackwardNode::apply(grad_output, input, target, weight, reduction, ignore_index, label_smoothing,
                                         row_max.detach(), log_sum.detach(), total_weight.detach());
}

// ------------------------------------------------------------------- linear cross-entropy

struct LinearCrossEntropyNode : torch::autograd::Function<LinearCrossEntropyNode> {
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& weight, const Tensor& target,
                        const std::optional<Tensor>& bias_opt, int64_t ignore_index, int64_t reduction,
                        double label_smoothing, int64_t chunk_size, std::optional<at::ScalarType> out_dtype) {
    const Tensor& bias = val(bias_opt);
    const std::array<bool, 3> mask = {input.requires_grad(), weight.requires_grad(),
                                      bias.defined() && bias.requires_grad()};
    const bool eager = reduction != at::Reduction::None;  // grads now, scaled by grad_output later
    Tensor loss, gi, gw, gb;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(loss, gi, gw, gb) = ops::linear_cross_entropy_chunked(
          input, weight, target, opt(bias), std::nullopt, ignore_index, reduction, label_smoothing, chunk_size,
          eager ? mask : std::array<bool, 3>{false, false, false}, out_dtype);
    }
    ctx->save_for_backward({input, weight, target, bias});
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["out_dtype"] = out_dtype.has_value() ? static_cast<int64_t>(*out_dtype) : int64_t(-1);
    ctx->saved_data["eager"] = eager;
    if (eager) {
      // (The op returns empty tensors for the gradients not asked for.)
      ctx->saved_data["grad_input"] = mask[0] ? gi : Tensor();
      ctx->saved_data["grad_weight"] = mask[1] ? gw : Tensor();
      ctx->saved_data["grad_bias"] = mask[2] ? gb : Tensor();
    }
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &input = saved[0], &weight = saved[1], &target = saved[2], &bias = saved[3];
    const Tensor& g = grads[0];
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt();
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const double eps = ctx->saved_data["label_smoothing"].toDouble();
    const int64_t chunk_size = ctx->saved_data["chunk_size"].toInt();
    const int64_t out_dtype_code = ctx->saved_data["out_dtype"].toInt();
    const auto out_dtype =
        out_dtype_code < 0 ? std::nullopt : std::optional<at::ScalarType>(static_cast<at::ScalarType>(out_dtype_code));
    variable_list out(9);
    const bool need[3] = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), bias.defined() && ctx->needs_input_grad(3)};
    if (!need[0] && !need[1] && !need[2]) return out;
    const int slots[3] = {0, 1, 3};
    if (at::GradMode::is_enabled()) {
      // create_graph: differentiate the composite (full logits) so that the result has a graph.
      variable_list wanted;
      std::vector<int> slot;
      const Tensor* candidates[3] = {&input, &weight, &bias};
      for (int i = 0; i < 3; ++i)
        if (need[i] && candidates[i]->requires_grad()) {
          wanted.push_back(*candidates[i]);
          slot.push_back(slots[i]);
        }
      if (wanted.empty()) return out;
      const auto loss =
          linear_cross_entropy_composite(input, weight, target, opt(bias), ignore_index, reduction, eps, out_dtype);
      const auto res = torch::autograd::grad({loss}, wanted, {g}, /*retain_graph=*/true, /*create_graph=*/true,
                                             /*allow_unused=*/true);
      for (size_t k = 0; k < slot.size(); ++k) out[slot[k]] = res[k];
      return out;
    }
    const char* names[3] = {"grad_input", "grad_weight", "grad_bias"};
    bool have = ctx->saved_data["eager"].toBool();
    for (int i = 0; i < 3 && have; ++i)
      if (need[i] && !ctx->saved_data[names[i]].toTensor().defined()) have = false;
    if (have) {
      // The first backward scales the gradients computed with the loss, in place (they are
      // ours); a second one (retain_graph) recomputes them.
      ctx->saved_data["eager"] = false;
      for (int i = 0; i < 3; ++i) {
        if (!need[i]) continue;
        Tensor t = ctx->saved_data[names[i]].toTensor();
        ctx->saved_data[names[i]] = Tensor();
        t.mul_(g);
        out[slots[i]] = t;
      }
      return out;
    }
    const auto res = ops::linear_cross_entropy_chunked(input, weight, target, opt(bias), g, ignore_index, reduction,
                                                       eps, chunk_size, {need[0], need[1], need[2]}, out_dtype);
    if (need[0]) out[0] = std::get<1>(res);
    if (need[1]) out[1] = std::get<2>(res);
    if (need[2]) out[3] = std::get<3>(res);
    return out;
  }
};

Tensor linear_cross_entropy_autograd(const Tensor& input, const Tensor& weight, const Tensor& target,
                                     const std::optional<Tensor>& bias, int64_t ignore_index, int64_t reduction,
                                     double label_smoothing, std::optional<int64_t> chunk_size,
                                     std::optional<at::ScalarType> out_dtype) {
  const Tensor& b = val(bias);
  if (!any_requires_grad("linear_cross_entropy", {&input, &weight, &b})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::linear_cross_entropy(input, weight, target, bias, ignore_index, reduction, label_smoothing,
                                     chunk_size, out_dtype);
  }
  return LinearCrossEntropyNode::apply(input, weight, target, bias, ignore_index, reduction, label_smoothing,
                                       chunk_size.value_or(0), out_dtype);
}

// ------------------------------------------------------------------------------- autocast
//
// What PyTorch's autocast policy does with the torch counterparts (torch_ops/autocast.h):
//   softmax, log_softmax  CUDA: float32 unless dtype is given (fp32_set_opt_dtype); CPU: not
//                         listed, the input's dtype
//   cross_entropy         float32 on CPU and CUDA (CPU lists cross_entropy_loss as fp32; on
//                         CUDA its log_softmax and nll_loss give a float32 loss); here the
//                         whole loss is computed from float32 logits
//   linear_cross_entropy  as cross_entropy(linear(x, W, b)): the GEMMs in the autocast dtype
//                         (linear), the loss in float32 (out_dtype; its reduction is
//                         accumulated in float32 from the lower-precision logits)
//   the nodes' ops        their inputs' dtypes (autocast off)

template <bool kLog, c10::DeviceType device>
Tensor softmax_fp32(const Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  const autocast::Off off;
  if (!dtype.has_value() && autocast::eligible<device>(input)) dtype = at::kFloat;
  return kLog ? ops::log_softmax(input, dim, dtype) : ops::softmax(input, dim, dtype);
}

template <c10::DeviceType device>
Tensor cross_entropy_fp32(const Tensor& input, const Tensor& target, const std::optional<Tensor>& weight,
                          int64_t reduction, int64_t ignore_index, double label_smoothing) {
  const autocast::Off off;
  using autocast::fp32;
  return ops::cross_entropy(fp32<device>(input), fp32<device>(target), fp32<device>(weight), reduction, ignore_index,
                            label_smoothing);
}

template <c10::DeviceType device>
Tensor linear_cross_entropy_autocast(const Tensor& input, const Tensor& weight, const Tensor& target,
                                     const std::optional<Tensor>& bias, int64_t ignore_index, int64_t reduction,
                                     double label_smoothing, std::optional<int64_t> chunk_size,
                                     std::optional<at::ScalarType> out_dtype) {
  const autocast::Off off;
  using autocast::lower;
  // The logits of an eligible (cast) input are in the autocast dtype: their loss is float32.
  if (!out_dtype.has_value() && autocast::eligible<device>(input)) out_dtype = at::kFloat;
  return ops::linear_cross_entropy(lower<device>(input), lower<device>(weight), target, lower<device>(bias),
                                   ignore_index, reduction, label_smoothing, chunk_size, out_dtype);
}

// The ops that the autograd nodes call (forward and backward): their inputs' dtypes.
constexpr const char* kNodeOps[] = {"softmax_backward",       "log_softmax_backward",
                                    "cross_entropy_forward",  "cross_entropy_backward",
                                    "cross_entropy_target_backward", "linear_cross_entropy_chunked"};

template <c10::DeviceType device>
void register_autocast(torch::Library& m) {
  if constexpr (device == c10::DeviceType::CUDA) {
    m.impl("softmax", &softmax_fp32<false, device>);
    m.impl("log_softmax", &softmax_fp32<true, device>);
  } else {
    m.impl("softmax", autocast::passthrough());
    m.impl("log_softmax", autocast::passthrough());
  }
  m.impl("cross_entropy", &cross_entropy_fp32<device>);
  m.impl("linear_cross_entropy", &linear_cross_entropy_autocast<device>);
  for (const char* op : kNodeOps) m.impl(op, autocast::passthrough());
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("softmax", &softmax_autograd<false>);
  m.impl("log_softmax", &softmax_autograd<true>);
  m.impl("softmax_backward", &softmax_backward_autograd<false>);
  m.impl("log_softmax_backward", &softmax_backward_autograd<true>);
  m.impl("cross_entropy", &cross_entropy_autograd);
  m.impl("cross_entropy_backward", &cross_entropy_backward_autograd);
  m.impl("linear_cross_entropy", &linear_cross_entropy_autograd);
}

TORCH_LIBRARY_IMPL(torch_ops, AutocastCPU, m) { register_autocast<c10::DeviceType::CPU>(m); }
TORCH_LIBRARY_IMPL(torch_ops, AutocastCUDA, m) { register_autocast<c10::DeviceType::CUDA>(m); }

TORCH_LIBRARY_IMPL(torch_ops, CompositeImplicitAutograd, m) {
  m.impl("cross_entropy_target_backward", &cross_entropy_target_backward);
}

}  // namespace torch_ops::softmax
