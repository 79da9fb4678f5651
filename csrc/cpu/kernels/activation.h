// The activation family's vectorised CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/activation.h. The math is torch_ops/activation_math.h, instantiated here
// with at::vec::Vectorized (the vector body) and with the opmath scalar (the tail).
// Its portable includes (torch_ops/activation.h, ATen/Parallel.h) are in kernels/prelude.h,
// before the instruction set switches; the formulas are compiled for it.
#include "torch_ops/activation_math.h"

// The primitives of the formulas on a vector of this instruction set.
namespace torch_ops::math {
template <typename T>
struct Prim<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  static V c(double v) { return V(static_cast<T>(v)); }
  static V exp(const V& x) { return x.exp(); }
  static V tanh(const V& x) { return x.tanh(); }
  // gelu's Gaussian exp(-x^2/2) <= 1: in float ATen's exp_u20 (20 ulp, about 1.2e-6
  // relative; a third of the time of Sleef's 1-ulp exp). It enters f' only as the term
  // x * pdf (|x pdf| <= 0.25: at most 3e-7 absolute) and f'' as pdf * (2 - x^2) (1.2e-6
  // relative). double: x.exp().
  static V gauss(const V& x) {
    if constexpr (std::is_same_v<T, float>) {
      return x.exp_u20();
    } else {
      return x.exp();
    }
  }
  // erf: float by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), the formula, constants
  // and order of ATen's Vectorized<float>::erf, except that exp(-x^2) is ATen's exp_u20
  // (a degree-5 polynomial) instead of Sleef's 1-ulp exp, which was half of erf's cost. This
  // changes gelu by at most 2.4e-7 (absolute) and doubles its throughput; an input of
  // -x^2 below float's range gives exp 0, a NaN input a NaN (t is NaN). double: x.erf().
  static V erf(const V& x) {
    if constexpr (std::is_same_v<T, float>) {
      const V one(1.f), neg_zero(-0.f);
      const V sign = x & neg_zero;
      const V t = one / at::vec::fmadd(V(0.3275911f), x ^ sign, one);
      V r = at::vec::fmadd(V(1.061405429f), t, V(-1.453152027f));
      r = at::vec::fmadd(r, t, V(1.421413741f));
      r = at::vec::fmadd(r, t, V(-0.284496736f));
      r = at::vec::fmadd(r, t, V(0.254829592f));
      const V neg_e = neg_zero ^ (neg_zero ^ (x * x)).exp_u20();  // -exp(-x^2)
      return sign ^ at::vec::fmadd(neg_e * t, r, one);
    } else {
      return x.erf();
    }
  }
  static V select(const V& mask, const V& a, const V& b) { return V::blendv(b, a, mask); }
};
}  // namespace torch_ops::math

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

using activation::Act;
using activation::Gate;
using activation::Pass;

// Elements per parallel task: at::internal::GRAIN_SIZE, as ATen's elementwise kernels.
constexpr int64_t kGrain = 32768;

// out[k][i] = f(in[0][i], in[1][i], ...)[k] for i < n, every pointer contiguous. f takes a
// std::array of NIn values and returns a std::array of NOut, for V = Vectorized<opmath>
// (bfloat16/half: two float vectors per load) and for V = opmath (the tail).
template <int NOut, int NIn, typename scalar_t, typename F>
inline void run(int64_t n, std::array<scalar_t*, NOut> out, std::array<const scalar_t*, NIn> in, const F& f) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  int64_t i = 0;
  if constexpr (at::vec::is_reduced_floating_point_v<scalar_t>) {
    constexpr int64_t kWidth = 2 * Vec::size();
    for (; i + kWidth <= n; i += kWidth) {
      std::array<Vec, NIn> a, b;
      for (int k = 0; k < NIn; ++k) at::vec::load_to_float<scalar_t>(in[k] + i, a[k], b[k]);
      const std::array<Vec, NOut> ra = f(a), rb = f(b);
      for (int k = 0; k < NOut; ++k) at::vec::convert_from_float<scalar_t>(ra[k], rb[k]).store(out[k] + i);
    }
  } else {
    constexpr int64_t kWidth = Vec::size();
    for (; i + 2 * kWidth <= n; i += 2 * kWidth) {  // two vectors per step: independent work in flight
      std::array<Vec, NIn> a, b;
      for (int k = 0; k < NIn; ++k) {
        a[k] = Vec::loadu(in[k] + i);
        b[k] = Vec::loadu(in[k] + i + kWidth);
      }
      const std::array<Vec, NOut> ra = f(a), rb = f(b);
      for (int k = 0; k < NOut; ++k) {
        ra[k].store(out[k] + i);
        rb[k].store(out[k] + i + kWidth);
      }
    }
    for (; i + kWidth <= n; i += kWidth) {
      std::array<Vec, NIn> a;
      for (int k = 0; k < NIn; ++k) a[k] = Vec::loadu(in[k] + i);
      const std::array<Vec, NOut> r = f(a);
      for (int k = 0; k < NOut; ++k) r[k].store(out[k] + i);
    }
  }
  for (; i < n; ++i) {
    std::array<opmath_t, NIn> a;
    for (int k = 0; k < NIn; ++k) a[k] = static_cast<opmath_t>(in[k][i]);
    const std::array<opmath_t, NOut> r = f(a);
    for (int k = 0; k < NOut; ++k) out[k][i] = static_cast<scalar_t>(r[k]);
  }
}

// ------------------------------------------------------------------------------ pointwise

template <int NIn, typename scalar_t, typename F>
void pointwise_parallel(const activation::Pointwise& job, const F& f) {
  auto* out = static_cast<scalar_t*>(job.out);
  std::array<const scalar_t*, NIn> in;
  for (int k = 0; k < NIn; ++k) in[k] = static_cast<const scalar_t*>(job.in[k]);
  at::parallel_for(0, job.n, kGrain, [&](int64_t begin, int64_t end) {
    std::array<const scalar_t*, NIn> at_begin;
    for (int k = 0; k < NIn; ++k) at_begin[k] = in[k] + begin;
    run<1, NIn, scalar_t>(end - begin, {out + begin}, at_begin, f);
  });
}

template <typename scalar_t, typename A>
void pointwise_act(const activation::Pointwise& job, const A& act) {
  switch (job.pass) {
    case Pass::Forward:
      return pointwise_parallel<1, scalar_t>(job, [&](const auto& a) {
        using V = std::decay_t<decltype(a[0])>;
        return std::array<V, 1>{act.f(a[0])};
      });
    case Pass::Backward:
      return pointwise_parallel<2, scalar_t>(job, [&](const auto& a) {
        using V = std::decay_t<decltype(a[0])>;
        return std::array<V, 1>{act.backward(a[0], a[1])};
      });
    case Pass::DoubleBackward:
      if constexpr (A::kSmooth) {
        return pointwise_parallel<3, scalar_t>(job, [&](const auto& a) {
          using V = std::decay_t<decltype(a[0])>;
          return std::array<V, 1>{act.double_backward(a[0], a[1], a[2])};
        });
      }
      break;
  }
  TORCH_INTERNAL_ASSERT(false);  // the host code never asks a non-smooth activation for a double backward
}

template <typename scalar_t>
void pointwise_typed(const activation::Pointwise& job) {
  math::with_activation(job.act, job.param, [&](const auto& act) { pointwise_act<scalar_t>(job, act); });
}

// ---------------------------------------------------------------------------------- gated

// The output's flat index range [begin, end) of (outer, half) is cut into runs that stay
// within one row o; the input's gate and value halves of row o start at o * 2 * half and
// o * 2 * half + half (swapped for glu, whose gate is the second half).
template <typename scalar_t, typename A>
void gated_act(const activation::Gated& job, const A& act, bool gate_first) {
  const int64_t H = job.half;
  const int64_t gate_off = gate_first ? 0 : H, value_off = gate_first ? H : 0;
  const auto in = [&](int k) { return static_cast<const scalar_t*>(job.in[k]); };
  const auto out = [&](int k) { return static_cast<scalar_t*>(job.out[k]); };
  const auto for_runs = [&](auto&& body) {
    at::parallel_for(0, job.outer * H, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end;) {
        const int64_t o = i / H, j = i - o * H;
        const int64_t len = std::min(end - i, H - j);
        body(i, o * 2 * H + j, len);  // (flat index in the half-shaped tensors, in the full ones, length)
        i += len;
      }
    });
  };
  switch (job.pass) {
    case Pass::Forward: {
      const scalar_t* x = in(0);
      scalar_t* y = out(0);
      return for_runs([&](int64_t h, int64_t f, int64_t len) {
        run<1, 2, scalar_t>(len, {y + h}, {x + f + gate_off, x + f + value_off}, [&](const auto& a) {
          using V = std::decay_t<decltype(a[0])>;
          return std::array<V, 1>{math::gated_forward(act, a[0], a[1])};
        });
      });
    }
    case Pass::Backward: {
      const scalar_t *go = in(0), *x = in(1);
      scalar_t* gx = out(0);
      return for_runs([&](int64_t h, int64_t f, int64_t len) {
        run<2, 3, scalar_t>(len, {gx + f + gate_off, gx + f + value_off}, {go + h, x + f + gate_off, x + f + value_off},
                            [&](const auto& a) {
                              using V = std::decay_t<decltype(a[0])>;
                              std::array<V, 2> r;
                              math::gated_backward(act, a[0], a[1], a[2], r[0], r[1]);
                              return r;
                            });
      });
    }
    case Pass::DoubleBackward: {
      const scalar_t *gg = in(0), *go = in(1), *x = in(2);
      scalar_t *dgo = out(0), *dx = out(1);
      return for_runs([&](int64_t h, int64_t f, int64_t len) {
        run<3, 5, scalar_t>(len, {dgo + h, dx + f + gate_off, dx + f + value_off},
                            {gg + f + gate_off, gg + f + value_off, go + h, x + f + gate_off, x + f + value_off},
                            [&](const auto& a) {
                              using V = std::decay_t<decltype(a[0])>;
                              std::array<V, 3> r;
                              math::gated_double_backward(act, a[0], a[1], a[2], a[3], a[4], r[0], r[1], r[2]);
                              return r;
                            });
      });
    }
  }
}

template <typename scalar_t>
void gated_typed(const activation::Gated& job) {
  math::with_gate(job.gate, [&](const auto& act, bool gate_first) { gated_act<scalar_t>(job, act, gate_first); });
}

}  // namespace

template <typename scalar_t>
void activation_pointwise(const activation::Pointwise& job) {
  pointwise_typed<scalar_t>(job);
}

template <typename scalar_t>
void activation_gated(const activation::Gated& job) {
  gated_typed<scalar_t>(job);
}

#define TORCH_OPS_INSTANTIATE(T)                                              \
  template void activation_pointwise<T>(const activation::Pointwise& job); \
  template void activation_gated<T>(const activation::Gated& job);
TORCH_OPS_INSTANTIATE(double)
TORCH_OPS_INSTANTIATE(float)
TORCH_OPS_INSTANTIATE(c10::BFloat16)
TORCH_OPS_INSTANTIATE(c10::Half)
#undef TORCH_OPS_INSTANTIATE

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
