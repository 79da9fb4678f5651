// Autograd for the activation family, at the Autograd dispatch key (C++: no Python on
// the eager path). Every backward is made of the family's dispatcher ops:
//   <op>                 -> <op>_backward(grad, s)          s = input or result
//   <op>_backward        -> <op>_backward(gg, s) for grad, <op>_double_backward(gg, grad, s) for s
//                           (zero for relu / leaky_relu, as PyTorch defines them)
//   <op>_double_backward -> itself for gg and grad (it is linear in each); a third derivative
//                           through s is not implemented and says so
// and likewise for the gated units, whose double backward returns (d grad, d input).
// In-place ops (relu_, leaky_relu_, silu_) check what PyTorch checks (a leaf, or a view of
// a leaf, that requires grad), bump the version counter and rebase the history of self
// onto their node (mark_dirty); silu_ saves a copy of the input as PyTorch does, relu_ and
// leaky_relu_ the result.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>

#include "torch_ops/activation.h"
#include "torch_ops/autograd_util.h"
#include "torch_ops/ops.h"

namespace torch_ops::activation {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---------------------------------------------------------------------------------------
// The ops of each activation, behind one interface for the node templates below.
// Param is what the op takes besides tensors (negative_slope, approximate) or a dummy.

struct ReluOps {
  using Param = int64_t;
  static constexpr const char* name = "relu";
  static constexpr bool kSavesResult = true, kSmooth = false;
  static Tensor fwd(const Tensor& x, Param) { return ops::relu(x); }
  static void fwd_(Tensor& x, Param) { ops::relu_(x); }
  static Tensor bwd(const Tensor& g, const Tensor& s, Param) { return ops::relu_backward(g, s); }
  static Tensor dbl(const Tensor&, const Tensor&, const Tensor&, Param) { return Tensor(); }
};

struct LeakyReluOps {
  using Param = double;
  static constexpr const char* name = "leaky_relu";
  static constexpr bool kSavesResult = false, kSmooth = false;
  static Tensor fwd(const Tensor& x, Param p) { return ops::leaky_relu(x, p); }
  static void fwd_(Tensor& x, Param p) { ops::leaky_relu_(x, p); }
  static Tensor bwd(const Tensor& g, const Tensor& s, Param p) { return ops::leaky_relu_backward(g, s, p); }
  static Tensor dbl(const Tensor&, const Tensor&, const Tensor&, Param) { return Tensor(); }
};

struct GeluOps {
  using Param = std::string;
  static constexpr const char* name = "gelu";
  static constexpr bool kSavesResult = false, kSmooth = true;
  static Tensor fwd(const Tensor& x, const Param& p) { return ops::gelu(x, p); }
  static Tensor bwd(const Tensor& g, const Tensor& s, const Param& p) { return ops::gelu_backward(g, s, p); }
  static Tensor dbl(const Tensor& gg, const Tensor& g, const Tensor& s, const Param& p) {
    return ops::gelu_double_backward(gg, g, s, p);
  }
};

struct SiluOps {
  using Param = int64_t;
  static constexpr const char* name = "silu";
  static constexpr bool kSavesResult = false, kSmooth = true;
  static Tensor fwd(const Tensor& x, Param) { return ops::silu(x); }
  static void fwd_(Tensor& x, Param) { ops::silu_(x); }
  static Tensor bwd(const Tensor& g, const Tensor& s, Param) { return ops::silu_backward(g, s); }
  static Tensor dbl(const Tensor& gg, const Tensor& g, const Tensor& s, Param) {
    return ops::silu_double_backward(gg, g, s);
  }
};

struct SigmoidOps {
  using Param = int64_t;
  static constexpr const char* name = "sigmoid";
  static constexpr bool kSavesResult = true, kSmooth = true;
  static Tensor fwd(const Tensor& x, Param) { return ops::sigmoid(x); }
  static Tensor bwd(const Tensor& g, const Tensor& s, Param) { return ops::sigmoid_backward(g, s); }
  static Tensor dbl(const Tensor& gg, const Tensor& g, const Tensor& s, Param) {
    return ops::sigmoid_double_backward(gg, g, s);
  }
};

struct TanhOps {
  using Param = int64_t;
  static constexpr const char* name = "tanh";
  static constexpr bool kSavesResult = true, kSmooth = true;
  static Tensor fwd(const Tensor& x, Param) { return ops::tanh(x); }
  static Tensor bwd(const Tensor& g, const Tensor& s, Param) { return ops::tanh_backward(g, s); }
  static Tensor dbl(const Tensor& gg, const Tensor& g, const Tensor& s, Param) {
    return ops::tanh_double_backward(gg, g, s);
  }
};

template <class O>
typename O::Param param_of(AutogradContext* ctx) {
  return ctx->saved_data["param"].to<typename O::Param>();
}

// y = f(x): saves x, or y for the ops whose backward takes the result.
template <class O>
struct UnaryNode : torch::autograd::Function<UnaryNode<O>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const typename O::Param& p) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = O::fwd(x, p);
    }
    ctx->save_for_backward({O::kSavesResult ? y : x});
    ctx->saved_data["param"] = p;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {O::bwd(grads[0], saved[0], param_of<O>(ctx)), Tensor()};
  }
};

// self = f(self) in place. Saves the result (relu_, leaky_relu_) or, for silu_, the copy of
// the input that inplace_autograd made before the op (with grad mode on, as ATen's
// original_self = self.clone(): the copy stays in the graph, so double backward reaches self).
template <class O>
struct InplaceNode : torch::autograd::Function<InplaceNode<O>> {
  static constexpr bool kSavesResult = !O::kSmooth;
  static Tensor forward(AutogradContext* ctx, Tensor self, const Tensor& input_copy, const typename O::Param& p) {
    ctx->mark_dirty({self});
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      O::fwd_(self, p);
    }
    // (Function::apply bumps the version of the inputs marked dirty.)
    ctx->save_for_backward({kSavesResult ? self : input_copy});
    ctx->saved_data["param"] = p;
    return self;
  }
  // relu_ and leaky_relu_ take no copy (an undefined tensor cannot be a Function input).
  static Tensor forward(AutogradContext* ctx, Tensor self, const typename O::Param& p) {
    return forward(ctx, self, Tensor(), p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto p = param_of<O>(ctx);
    if constexpr (std::is_same_v<O, LeakyReluOps>) {
      TORCH_CHECK(p >= 0, "torch_ops.leaky_relu_: the backward of in-place leaky_relu with a negative slope (", p,
                  ") is not supported: the input cannot be recovered from the result. Call the out-of-place ",
                  "leaky_relu (inplace=False) instead.");
    }
    variable_list out{O::bwd(grads[0], saved[0], p), Tensor()};
    if (!kSavesResult) out.emplace_back();  // the copy
    return out;
  }
};

// gx = <op>_backward(g, s): linear in g; through s, <op>_double_backward (zero for relu and
// leaky_relu).
template <class O>
struct BackwardNode : torch::autograd::Function<BackwardNode<O>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& s, const typename O::Param& p) {
    ctx->save_for_backward({O::kSmooth && s.requires_grad() ? g : Tensor(), s});
    ctx->saved_data["param"] = p;
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::bwd(g, s, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto p = param_of<O>(ctx);
    Tensor d_g, d_s;
    if (ctx->needs_input_grad(0)) d_g = O::bwd(grads[0], saved[1], p);
    if (O::kSmooth && ctx->needs_input_grad(1)) d_s = O::dbl(grads[0], saved[0], saved[1], p);
    return {d_g, d_s, Tensor()};
  }
};

// h = gg * g * f''(s): linear in gg and in g; the third derivative through s is not implemented.
template <class O>
struct DoubleBackwardNode : torch::autograd::Function<DoubleBackwardNode<O>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& gg, const Tensor& g, const Tensor& s,
                        const typename O::Param& p) {
    ctx->save_for_backward({g.requires_grad() ? gg : Tensor(), gg.requires_grad() ? g : Tensor(), s});
    ctx->saved_data["param"] = p;
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::dbl(gg, g, s, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!ctx->needs_input_grad(2), "torch_ops.", O::name,
                "_double_backward: the third derivative with respect to the input is not implemented");
    const auto saved = ctx->get_saved_variables();
    const auto p = param_of<O>(ctx);
    Tensor d_gg, d_g;
    if (ctx->needs_input_grad(0)) d_gg = O::dbl(grads[0], saved[1], saved[2], p);
    if (ctx->needs_input_grad(1)) d_g = O::dbl(saved[0], grads[0], saved[2], p);
    return {d_gg, d_g, Tensor(), Tensor()};
  }
};

template <class O>
Tensor unary_autograd(const Tensor& x, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&x})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::fwd(x, p);
  }
  return UnaryNode<O>::apply(x, p);
}

template <class O>
Tensor& inplace_autograd(Tensor& self, const typename O::Param& p) {
  const bool requires_grad = any_requires_grad(O::name, {&self});
  torch::autograd::check_inplace(self, requires_grad);
  if (!requires_grad) {
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      O::fwd_(self, p);
    }
    torch::autograd::impl::bump_version(self);
    return self;
  }
  if constexpr (InplaceNode<O>::kSavesResult) {
    InplaceNode<O>::apply(self, p);
  } else {
    InplaceNode<O>::apply(self, self.clone(), p);
  }
  return self;
}

template <class O>
Tensor backward_autograd(const Tensor& g, const Tensor& s, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&g, &s})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::bwd(g, s, p);
  }
  return BackwardNode<O>::apply(g, s, p);
}

template <class O>
Tensor double_backward_autograd(const Tensor& gg, const Tensor& g, const Tensor& s, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&gg, &g, &s})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::dbl(gg, g, s, p);
  }
  return DoubleBackwardNode<O>::apply(gg, g, s, p);
}

// ---------------------------------------------------------------------------------- gated

struct GluOps {
  using Param = int64_t;
  static constexpr const char* name = "glu";
  static Tensor fwd(const Tensor& x, int64_t dim, Param) { return ops::glu(x, dim); }
  static Tensor bwd(const Tensor& g, const Tensor& x, int64_t dim, Param) { return ops::glu_backward(g, x, dim); }
  static std::tuple<Tensor, Tensor> dbl(const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim, Param) {
    return ops::glu_double_backward(gg, g, x, dim);
  }
};

struct SwigluOps {
  using Param = int64_t;
  static constexpr const char* name = "swiglu";
  static Tensor fwd(const Tensor& x, int64_t dim, Param) { return ops::swiglu(x, dim); }
  static Tensor bwd(const Tensor& g, const Tensor& x, int64_t dim, Param) { return ops::swiglu_backward(g, x, dim); }
  static std::tuple<Tensor, Tensor> dbl(const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim, Param) {
    return ops::swiglu_double_backward(gg, g, x, dim);
  }
};

struct GegluOps {
  using Param = std::string;
  static constexpr const char* name = "geglu";
  static Tensor fwd(const Tensor& x, int64_t dim, const Param& p) { return ops::geglu(x, dim, p); }
  static Tensor bwd(const Tensor& g, const Tensor& x, int64_t dim, const Param& p) {
    return ops::geglu_backward(g, x, dim, p);
  }
  static std::tuple<Tensor, Tensor> dbl(const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim,
                                        const Param& p) {
    return ops::geglu_double_backward(gg, g, x, dim, p);
  }
};

template <class O>
struct GatedNode : torch::autograd::Function<GatedNode<O>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t dim, const typename O::Param& p) {
    ctx->save_for_backward({x});
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["param"] = p;
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::fwd(x, dim, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {O::bwd(grads[0], saved[0], ctx->saved_data["dim"].toInt(), param_of<O>(ctx)), Tensor(), Tensor()};
  }
};

template <class O>
struct GatedBackwardNode : torch::autograd::Function<GatedBackwardNode<O>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& x, int64_t dim,
                        const typename O::Param& p) {
    ctx->save_for_backward({g, x});
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["param"] = p;
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::bwd(g, x, dim, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [d_g, d_x] = O::dbl(grads[0], saved[0], saved[1], ctx->saved_data["dim"].toInt(), param_of<O>(ctx));
    return {ctx->needs_input_grad(0) ? d_g : Tensor(), ctx->needs_input_grad(1) ? d_x : Tensor(), Tensor(),
            Tensor()};
  }
};

template <class O>
struct GatedDoubleBackwardNode : torch::autograd::Function<GatedDoubleBackwardNode<O>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim,
                               const typename O::Param& p) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [a, b] = O::dbl(gg, g, x, dim, p);
    return {a, b};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false, "torch_ops.", O::name, "_double_backward: third-order derivatives are not implemented");
  }
};

template <class O>
Tensor gated_autograd(const Tensor& x, int64_t dim, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&x})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::fwd(x, dim, p);
  }
  return GatedNode<O>::apply(x, dim, p);
}

template <class O>
Tensor gated_backward_autograd(const Tensor& g, const Tensor& x, int64_t dim, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&g, &x})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::bwd(g, x, dim, p);
  }
  return GatedBackwardNode<O>::apply(g, x, dim, p);
}

template <class O>
std::tuple<Tensor, Tensor> gated_double_backward_autograd(const Tensor& gg, const Tensor& g, const Tensor& x,
                                                          int64_t dim, const typename O::Param& p) {
  if (!any_requires_grad(O::name, {&gg, &g, &x})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return O::dbl(gg, g, x, dim, p);
  }
  auto out = GatedDoubleBackwardNode<O>::apply(gg, g, x, dim, p);
  return {out[0], out[1]};
}

std::string str(c10::string_view s) { return std::string(s.data(), s.size()); }

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, Autograd, m) {
  m.impl("relu", [](const Tensor& x) { return unary_autograd<ReluOps>(x, 0); });
  m.impl("relu_", [](Tensor& x) -> Tensor& { return inplace_autograd<ReluOps>(x, 0); });
  m.impl("relu_backward", [](const Tensor& g, const Tensor& y) { return backward_autograd<ReluOps>(g, y, 0); });
  m.impl("leaky_relu", [](const Tensor& x, double p) { return unary_autograd<LeakyReluOps>(x, p); });
  m.impl("leaky_relu_", [](Tensor& x, double p) -> Tensor& { return inplace_autograd<LeakyReluOps>(x, p); });
  m.impl("leaky_relu_backward",
         [](const Tensor& g, const Tensor& x, double p) { return backward_autograd<LeakyReluOps>(g, x, p); });
  m.impl("gelu", [](const Tensor& x, c10::string_view a) { return unary_autograd<GeluOps>(x, str(a)); });
  m.impl("gelu_backward", [](const Tensor& g, const Tensor& x, c10::string_view a) {
    return backward_autograd<GeluOps>(g, x, str(a));
  });
  m.impl("gelu_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& x, c10::string_view a) {
    return double_backward_autograd<GeluOps>(gg, g, x, str(a));
  });
  m.impl("silu", [](const Tensor& x) { return unary_autograd<SiluOps>(x, 0); });
  m.impl("silu_", [](Tensor& x) -> Tensor& { return inplace_autograd<SiluOps>(x, 0); });
  m.impl("silu_backward", [](const Tensor& g, const Tensor& x) { return backward_autograd<SiluOps>(g, x, 0); });
  m.impl("silu_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& x) {
    return double_backward_autograd<SiluOps>(gg, g, x, 0);
  });
  m.impl("sigmoid", [](const Tensor& x) { return unary_autograd<SigmoidOps>(x, 0); });
  m.impl("sigmoid_backward", [](const Tensor& g, const Tensor& y) { return backward_autograd<SigmoidOps>(g, y, 0); });
  m.impl("sigmoid_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& y) {
    return double_backward_autograd<SigmoidOps>(gg, g, y, 0);
  });
  m.impl("tanh", [](const Tensor& x) { return unary_autograd<TanhOps>(x, 0); });
  m.impl("tanh_backward", [](const Tensor& g, const Tensor& y) { return backward_autograd<TanhOps>(g, y, 0); });
  m.impl("tanh_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& y) {
    return double_backward_autograd<TanhOps>(gg, g, y, 0);
  });

  m.impl("glu", [](const Tensor& x, int64_t dim) { return gated_autograd<GluOps>(x, dim, 0); });
  m.impl("glu_backward",
         [](const Tensor& g, const Tensor& x, int64_t dim) { return gated_backward_autograd<GluOps>(g, x, dim, 0); });
  m.impl("glu_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim) {
    return gated_double_backward_autograd<GluOps>(gg, g, x, dim, 0);
  });
  m.impl("swiglu", [](const Tensor& x, int64_t dim) { return gated_autograd<SwigluOps>(x, dim, 0); });
  m.impl("swiglu_backward", [](const Tensor& g, const Tensor& x, int64_t dim) {
    return gated_backward_autograd<SwigluOps>(g, x, dim, 0);
  });
  m.impl("swiglu_double_backward", [](const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim) {
    return gated_double_backward_autograd<SwigluOps>(gg, g, x, dim, 0);
  });
  m.impl("geglu", [](const Tensor& x, int64_t dim, c10::string_view a) {
    return gated_autograd<GegluOps>(x, dim, str(a));
  });
  m.impl("geglu_backward", [](const Tensor& g, const Tensor& x, int64_t dim, c10::string_view a) {
    return gated_backward_autograd<GegluOps>(g, x, dim, str(a));
  });
  m.impl("geglu_double_backward",
         [](const Tensor& gg, const Tensor& g, const Tensor& x, int64_t dim, c10::string_view a) {
           return gated_double_backward_autograd<GegluOps>(gg, g, x, dim, str(a));
         });
}

}  // namespace torch_ops::activation
