// The scalar math of the activation family, written once and used by the CPU kernels
// (vector body and scalar tail) and by the CUDA kernels.
//
// Every formula is a template on the value type V, which is a scalar opmath type
// (float, double) or, in the CPU kernels, an at::vec::Vectorized<float/double>. The few
// primitives that differ between them (exp, tanh, erf, a masked select, a constant, and
// gauss: exp of a non-positive argument -x^2/2 that only scales a term) come
// from Prim<V>: the scalar specialisations are here (host and device), the Vectorized
// one is in csrc/cpu/kernels/activation.h. Comparisons (x > 0) give a bool for a scalar
// and a lane mask for a vector; Prim<V>::select takes either.
//
// The formulas follow ATen's CPU kernels term by term (so float32 results agree to an
// ulp or two, except gelu (erf), whose float32 vector erf and Gaussian use a faster exp:
// within 5e-7 of PyTorch's, csrc/cpu/kernels/activation.h), and each activation gives its value f, first derivative f' and second
// derivative f''. Backward formulas that PyTorch writes as a select (relu, leaky_relu)
// are selects here too: a zero gradient stays zero even where grad_output is inf/NaN.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>

namespace torch_ops::math {

template <typename V>
struct Prim;

template <>
struct Prim<float> {
  C10_HOST_DEVICE static float c(double v) { return static_cast<float>(v); }
  C10_HOST_DEVICE static float exp(float x) { return ::expf(x); }
  C10_HOST_DEVICE static float gauss(float x) { return ::expf(x); }
  C10_HOST_DEVICE static float tanh(float x) { return ::tanhf(x); }
  C10_HOST_DEVICE static float erf(float x) { return ::erff(x); }
  C10_HOST_DEVICE static float select(bool m, float a, float b) { return m ? a : b; }
};

template <>
struct Prim<double> {
  C10_HOST_DEVICE static double c(double v) { return v; }
  C10_HOST_DEVICE static double exp(double x) { return ::exp(x); }
  C10_HOST_DEVICE static double gauss(double x) { return ::exp(x); }
  C10_HOST_DEVICE static double tanh(double x) { return ::tanh(x); }
  C10_HOST_DEVICE static double erf(double x) { return ::erf(x); }
  C10_HOST_DEVICE static double select(bool m, double a, double b) { return m ? a : b; }
};

// Constants of ATen's gelu kernels (ATen/native/cpu/Activation.cpp).
constexpr double kSqrt1_2 = 0.70710678118654752440;             // M_SQRT1_2
constexpr double kGeluPdf = 1.12837916709551257390 * kSqrt1_2 * 0.5;  // M_2_SQRTPI * M_SQRT1_2 * 0.5
constexpr double kGeluBeta = 1.41421356237309504880 * 1.12837916709551257390 * 0.5;  // sqrt(2 / pi)
constexpr double kGeluKappa = 0.044715;

// ----------------------------------------------------------------------------------------
// Piecewise-linear activations: value and backward (PyTorch defines no curvature: the
// derivative of their backward with respect to the input is zero).

// relu(x) = max(x, 0), NaN propagates. Backward from the result, as PyTorch's
// threshold_backward(grad, result, 0): grad where result > 0, else 0.
// The backward of an activation whose derivatives are taken from its input (gelu, silu):
// grad * f'(x), and its derivative with respect to x, gg * grad * f''(x). Derived supplies
// df and d2f.
template <typename Derived>
struct FromInput {
  static constexpr bool kSmooth = true;
  template <typename V>
  C10_HOST_DEVICE V backward(V grad, V x) const {
    return grad * static_cast<const Derived&>(*this).df(x);
  }
  template <typename V>
  C10_HOST_DEVICE V double_backward(V gg, V grad, V x) const {
    return gg * grad * static_cast<const Derived&>(*this).d2f(x);
  }
};

struct Relu {
  static constexpr bool kSmooth = false;
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    return P::select(x < P::c(0), P::c(0), x);
  }
  template <typename V>
  C10_HOST_DEVICE V backward(V grad, V result) const {
    using P = Prim<V>;
    return P::select(result <= P::c(0), P::c(0), grad);
  }
};

// leaky_relu(x) = x > 0 ? x : slope * x. Backward from the input, or from the result when
// slope >= 0 (in-place; the sign of the result is the sign of the input).
struct LeakyRelu {
  static constexpr bool kSmooth = false;
  double slope;
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    return P::select(x > P::c(0), x, x * P::c(slope));
  }
  template <typename V>
  C10_HOST_DEVICE V backward(V grad, V x) const {
    using P = Prim<V>;
    return P::select(x > P::c(0), grad, grad * P::c(slope));
  }
};

// ----------------------------------------------------------------------------------------
// Smooth activations: f, f' (df), f'' (d2f), and f with f' (f_df) or with f' and f''
// (f_df_d2f) computed together for the gated units.

// gelu(x) = x Phi(x); Phi' = phi; f' = Phi + x phi; f'' = phi (2 - x^2).
struct GeluErf : FromInput<GeluErf> {
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    return x * P::c(0.5) * (P::c(1) + P::erf(x * P::c(kSqrt1_2)));
  }
  template <typename V>
  C10_HOST_DEVICE V df(V x) const {
    using P = Prim<V>;
    const V cdf = P::c(0.5) * (P::c(1) + P::erf(x * P::c(kSqrt1_2)));
    const V pdf = P::c(kGeluPdf) * P::gauss(x * x * P::c(-0.5));
    return cdf + x * pdf;
  }
  template <typename V>
  C10_HOST_DEVICE V d2f(V x) const {
    using P = Prim<V>;
    const V x2 = x * x;
    return P::c(kGeluPdf) * P::gauss(x2 * P::c(-0.5)) * (P::c(2) - x2);
  }
  template <typename V>
  C10_HOST_DEVICE void f_df(V x, V& f, V& df) const {
    using P = Prim<V>;
    const V cdf = P::c(0.5) * (P::c(1) + P::erf(x * P::c(kSqrt1_2)));
    const V pdf = P::c(kGeluPdf) * P::gauss(x * x * P::c(-0.5));
    f = x * cdf;
    df = cdf + x * pdf;
  }
  template <typename V>
  C10_HOST_DEVICE void f_df_d2f(V x, V& f, V& df, V& d2f) const {
    using P = Prim<V>;
    const V x2 = x * x;
    const V cdf = P::c(0.5) * (P::c(1) + P::erf(x * P::c(kSqrt1_2)));
    const V pdf = P::c(kGeluPdf) * P::gauss(x2 * P::c(-0.5));
    f = x * cdf;
    df = cdf + x * pdf;
    d2f = pdf * (P::c(2) - x2);
  }
};

// gelu(x, 'tanh') = x/2 (1 + t), t = tanh(u), u = beta (x + kappa x^3);
// f' = (1 + t)/2 + x/2 (1 - t^2) u'; f'' = (1 - t^2) (u' + x/2 (u'' - 2 t u'^2)),
// u' = beta (1 + 3 kappa x^2), u'' = 6 beta kappa x.
struct GeluTanh : FromInput<GeluTanh> {
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    const V inner = P::c(kGeluBeta) * (x + P::c(kGeluKappa) * (x * x * x));
    return P::c(0.5) * x * (P::c(1) + P::tanh(inner));
  }
  template <typename V>
  C10_HOST_DEVICE V df(V x) const {
    V f, df;
    f_df(x, f, df);
    return df;
  }
  template <typename V>
  C10_HOST_DEVICE V d2f(V x) const {
    V f, df, d2f;
    f_df_d2f(x, f, df, d2f);
    return d2f;
  }
  template <typename V>
  C10_HOST_DEVICE void f_df(V x, V& f, V& df) const {
    // ATen's GeluBackward (tanh): left/right and their derivatives.
    using P = Prim<V>;
    const V x_sq = x * x;
    const V inner = P::c(kGeluBeta) * (x + P::c(kGeluKappa) * (x_sq * x));
    const V t = P::tanh(inner);
    const V left = P::c(0.5) * x;
    const V right = P::c(1) + t;
    f = left * right;
    const V left_derivative = P::c(0.5) * right;
    const V right_derivative =
        left * (P::c(1) - t * t) * (P::c(kGeluBeta) * (P::c(1) + P::c(3 * kGeluKappa) * x_sq));
    df = left_derivative + right_derivative;
  }
  template <typename V>
  C10_HOST_DEVICE void f_df_d2f(V x, V& f, V& df, V& d2f) const {
    using P = Prim<V>;
    const V x_sq = x * x;
    const V inner = P::c(kGeluBeta) * (x + P::c(kGeluKappa) * (x_sq * x));
    const V t = P::tanh(inner);
    const V sech2 = P::c(1) - t * t;
    const V du = P::c(kGeluBeta) * (P::c(1) + P::c(3 * kGeluKappa) * x_sq);
    const V d2u = P::c(6 * kGeluBeta * kGeluKappa) * x;
    const V left = P::c(0.5) * x;
    f = left * (P::c(1) + t);
    df = P::c(0.5) * (P::c(1) + t) + left * sech2 * du;
    d2f = sech2 * (du + left * (d2u - P::c(2) * t * du * du));
  }
};

// sigmoid(x) = 1 / (1 + e^-x) = s; s' = s (1 - s); s'' = s (1 - s) (1 - 2 s).
struct Sigmoid {
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    return P::c(1) / (P::c(1) + P::exp(P::c(0) - x));
  }
  template <typename V>
  C10_HOST_DEVICE void f_df(V x, V& f, V& df) const {
    using P = Prim<V>;
    f = this->f(x);
    df = f * (P::c(1) - f);
  }
  template <typename V>
  C10_HOST_DEVICE void f_df_d2f(V x, V& f, V& df, V& d2f) const {
    using P = Prim<V>;
    f_df(x, f, df);
    d2f = df * (P::c(1) - P::c(2) * f);
  }
  // The unary op's backward is from the result y = s: grad * (1 - y) * y (as ATen), and
  // its derivative with respect to y is grad * (1 - 2y).
  static constexpr bool kSmooth = true;
  template <typename V>
  C10_HOST_DEVICE V backward(V grad, V y) const {
    using P = Prim<V>;
    return grad * (P::c(1) - y) * y;
  }
  template <typename V>
  C10_HOST_DEVICE V double_backward(V gg, V grad, V y) const {
    using P = Prim<V>;
    return gg * grad * (P::c(1) - P::c(2) * y);
  }
};

// tanh: from the result y, dy/dx = 1 - y^2, and its derivative with respect to y, -2y.
struct Tanh {
  static constexpr bool kSmooth = true;
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    return Prim<V>::tanh(x);
  }
  template <typename V>
  C10_HOST_DEVICE V backward(V grad, V y) const {
    using P = Prim<V>;
    return grad * (P::c(1) - y * y);
  }
  template <typename V>
  C10_HOST_DEVICE V double_backward(V gg, V grad, V y) const {
    using P = Prim<V>;
    return gg * grad * (P::c(-2) * y);
  }
};

// silu(x) = x s, s = sigmoid(x); f' = s (1 + x (1 - s)); f'' = s (1 - s) (2 + x (1 - 2 s)).
struct Silu : FromInput<Silu> {
  template <typename V>
  C10_HOST_DEVICE V f(V x) const {
    using P = Prim<V>;
    return x / (P::c(1) + P::exp(P::c(0) - x));
  }
  template <typename V>
  C10_HOST_DEVICE V df(V x) const {
    using P = Prim<V>;
    const V s = P::c(1) / (P::c(1) + P::exp(P::c(0) - x));
    return s * (P::c(1) + x * (P::c(1) - s));
  }
  template <typename V>
  C10_HOST_DEVICE V d2f(V x) const {
    using P = Prim<V>;
    const V s = P::c(1) / (P::c(1) + P::exp(P::c(0) - x));
    return s * (P::c(1) - s) * (P::c(2) + x * (P::c(1) - P::c(2) * s));
  }
  template <typename V>
  C10_HOST_DEVICE void f_df(V x, V& f, V& df) const {
    using P = Prim<V>;
    const V s = P::c(1) / (P::c(1) + P::exp(P::c(0) - x));
    f = x * s;
    df = s * (P::c(1) + x * (P::c(1) - s));
  }
  template <typename V>
  C10_HOST_DEVICE void f_df_d2f(V x, V& f, V& df, V& d2f) const {
    using P = Prim<V>;
    const V s = P::c(1) / (P::c(1) + P::exp(P::c(0) - x));
    const V one_minus_s = P::c(1) - s;
    f = x * s;
    df = s * (P::c(1) + x * one_minus_s);
    d2f = s * one_minus_s * (P::c(2) + x * (P::c(1) - P::c(2) * s));
  }
};

// ----------------------------------------------------------------------------------------
// Gated units: out = value * act(gate). glu: act = sigmoid, gate = second half;
// swiglu: silu, geglu: gelu, gate = first half.
//   backward:       d_gate = go * value * act'(gate),  d_value = go * act(gate)
//   double backward, with gg = (A on d_gate, B on d_value):
//     d_go    = A * value * act'(gate) + B * act(gate)
//     d_gate  = go * (A * value * act''(gate) + B * act'(gate))
//     d_value = go * A * act'(gate)

template <typename Act, typename V>
C10_HOST_DEVICE V gated_forward(const Act& act, V gate, V value) {
  return value * act.f(gate);
}

template <typename Act, typename V>
C10_HOST_DEVICE void gated_backward(const Act& act, V go, V gate, V value, V& d_gate, V& d_value) {
  V f, df;
  act.f_df(gate, f, df);
  d_gate = go * value * df;
  d_value = go * f;
}

template <typename Act, typename V>
C10_HOST_DEVICE void gated_double_backward(const Act& act, V gg_gate, V gg_value, V go, V gate, V value, V& d_go,
                                           V& d_gate, V& d_value) {
  V f, df, d2f;
  act.f_df_d2f(gate, f, df, d2f);
  d_go = gg_gate * value * df + gg_value * f;
  d_gate = go * (gg_gate * value * d2f + gg_value * df);
  d_value = go * gg_gate * df;
}

// The formula object of each activation and gated unit, chosen once per job by the CPU
// kernels and by the CUDA launcher alike (so the enum-to-formula table exists once).
// `f` gets the formula object (and, for gated units, whether the gate is the first half).
// Templated on the enums of torch_ops/activation.h, which this header does not include.
template <typename ActEnum, typename F>
inline void with_activation(ActEnum act, double param, F&& f) {
  switch (act) {
    case ActEnum::Relu:
      return f(Relu{});
    case ActEnum::LeakyRelu:
      return f(LeakyRelu{param});
    case ActEnum::GeluErf:
      return f(GeluErf{});
    case ActEnum::GeluTanh:
      return f(GeluTanh{});
    case ActEnum::Silu:
      return f(Silu{});
    case ActEnum::Sigmoid:
      return f(Sigmoid{});
    case ActEnum::Tanh:
      return f(Tanh{});
  }
}

// glu = a * sigmoid(b): its gate is the second half; the others gate with the first.
template <typename GateEnum, typename F>
inline void with_gate(GateEnum gate, F&& f) {
  switch (gate) {
    case GateEnum::Glu:
      return f(Sigmoid{}, /*gate_first=*/false);
    case GateEnum::Swiglu:
      return f(Silu{}, true);
    case GateEnum::GegluErf:
      return f(GeluErf{}, true);
    case GateEnum::GegluTanh:
      return f(GeluTanh{}, true);
  }
}

}  // namespace torch_ops::math
