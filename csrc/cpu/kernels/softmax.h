// The softmax family's vectorised CPU kernels, compiled once per instruction set
// (csrc/cpu/isa_*.cpp, namespace torch_ops::cpu::TORCH_OPS_ISA); declared in
// torch_ops/softmax.h. Rows are contiguous; at::parallel_for over rows; the inner loops
// are at::vec::Vectorized<acc_t> (float for bfloat16/float16, loaded and stored through
// float) with a scalar tail written with the same generic lambdas. The cross-entropy
// formulas of a row are torch_ops/softmax_math.h, shared with the CUDA kernels.
#include "torch_ops/softmax_math.h"

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

template <typename scalar_t>
struct RowKernels {
  using acc_t = at::opmath_type<scalar_t>;
  using V = at::vec::Vectorized<acc_t>;
  static constexpr int64_t W = V::size();

  template <typename T>
  static V vload(const T* p) {
    if constexpr (at::vec::is_reduced_floating_point_v<T>) {
      V v;
      at::vec::load_to_float<T>(p, v);
      return v;
    } else {
      return V::loadu(p);
    }
  }
  static void vstore(scalar_t* p, const V& v) {
    if constexpr (at::vec::is_reduced_floating_point_v<scalar_t>) {
      at::vec::convert_from_float<scalar_t>(v, v).store(p, W);
    } else {
      v.store(p);
    }
  }
  // exp_u20 (at most 2 ulp in float, as ATen's softmax kernels use; exact exp for double).
  static V ex(const V& v) { return v.exp_u20(); }
  static acc_t ex(acc_t v) { return std::exp(v); }

  // sum over i < n of f(ld), where ld(p) reads p[i..] as a V (vector body) or an acc_t (tail).
  // Blocks of kBlock vectors are summed apart and then added to the total (cascade
  // summation): the rounding error grows with n / kBlock + kBlock, not with n.
  template <typename F>
  static acc_t sum(int64_t n, const F& f) {
    constexpr int64_t kBlock = 16;
    V total(acc_t(0));
    int64_t i = 0;
    const auto v0 = [&](const auto* p) { return vload(p + i); };
    const auto v1 = [&](const auto* p) { return vload(p + i + W); };
    while (i + 2 * W <= n) {
      V a0(acc_t(0)), a1(acc_t(0));
      const int64_t end = std::min(n, i + kBlock * 2 * W);
      for (; i + 2 * W <= end; i += 2 * W) {
        a0 += f(v0);
        a1 += f(v1);
      }
      total += a0 + a1;
    }
    for (; i + W <= n; i += W) total += f(v0);
    acc_t s = at::vec::vec_reduce_all<acc_t>([](V& a, V& b) { return a + b; }, total);
    const auto sl = [&](const auto* p) { return static_cast<acc_t>(p[i]); };
    for (; i < n; ++i) s += f(sl);
    return s;
  }

  // out[i] = f(ld) for i < n (out may be one of the pointers f reads: element i is read first).
  template <typename F>
  static void map(int64_t n, scalar_t* out, const F& f) {
    int64_t i = 0;
    const auto v0 = [&](const auto* p) { return vload(p + i); };
    const auto v1 = [&](const auto* p) { return vload(p + i + W); };
    for (; i + 2 * W <= n; i += 2 * W) {
      const V a = f(v0), b = f(v1);
      vstore(out + i, a);
      vstore(out + i + W, b);
    }
    for (; i + W <= n; i += W) vstore(out + i, f(v0));
    const auto sl = [&](const auto* p) { return static_cast<acc_t>(p[i]); };
    for (; i < n; ++i) out[i] = static_cast<scalar_t>(f(sl));
  }

  // The row's maximum; nan when the row holds a nan (as PyTorch).
  static acc_t max(const scalar_t* x, int64_t n) {
    V m0(-std::numeric_limits<acc_t>::infinity()), m1 = m0;
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      m0 = at::vec::maximum(m0, vload(x + i));
      m1 = at::vec::maximum(m1, vload(x + i + W));
    }
    for (; i + W <= n; i += W) m0 = at::vec::maximum(m0, vload(x + i));
    acc_t m = at::vec::vec_reduce_all<acc_t>([](V& a, V& b) { return at::vec::maximum(a, b); },
                                             at::vec::maximum(m0, m1));
    for (; i < n; ++i) {
      const acc_t v = static_cast<acc_t>(x[i]);
      if (v > m || std::isnan(v)) m = v;
    }
    return m;
  }

  // (max, sum of exp(x - max)) of a row: two passes over the (cached) row, one exp each.
  static math::MaxSum<acc_t> max_sum(const scalar_t* x, int64_t n) {
    const acc_t m = max(x, n);
    const acc_t s = sum(n, [&](const auto& ld) {
      using T = decltype(ld(x));
      return ex(ld(x) - T(m));
    });
    return {m, s};
  }

  static void rows(const softmax::Rows& job) {
    const int64_t C = job.cols;
    auto* out = static_cast<scalar_t*>(job.out);
    const auto* a = static_cast<const scalar_t*>(job.in[0]);
    const auto* b = static_cast<const scalar_t*>(job.in[1]);
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1));
    at::parallel_for(0, job.rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* x = a + r * C;
        scalar_t* y = out + r * C;
        switch (job.op) {
          case softmax::RowOp::Softmax: {
            const acc_t m = max(x, C);
            if constexpr (!at::vec::is_reduced_floating_point_v<scalar_t>) {
              // exp(x - max) stored once, then scaled: one exp per element.
              acc_t s = 0;
              {
                int64_t i = 0;
                V acc(acc_t(0));
                for (; i + W <= C; i += W) {
                  const V e = ex(V::loadu(x + i) - V(m));
                  e.store(y + i);
                  acc += e;
                }
                s = at::vec::vec_reduce_all<acc_t>([](V& u, V& v) { return u + v; }, acc);
                for (; i < C; ++i) {
                  const acc_t e = std::exp(x[i] - m);
                  y[i] = e;
                  s += e;
                }
              }
              const acc_t inv = acc_t(1) / s;
              map(C, y, [&](const auto& ld) {
                using T = decltype(ld(y));
                return ld(y) * T(inv);
              });
            } else {
              const acc_t s = sum(C, [&](const auto& ld) {
                using T = decltype(ld(x));
                return ex(ld(x) - T(m));
              });
              const acc_t inv = acc_t(1) / s;
              map(C, y, [&](const auto& ld) {
                using T = decltype(ld(x));
                return ex(ld(x) - T(m)) * T(inv);
              });
            }
            break;
          }
          case softmax::RowOp::LogSoftmax: {
            const auto lse = math::lse_of(max_sum(x, C));
            map(C, y, [&](const auto& ld) { return math::minus_lse(ld(x), lse); });
            break;
          }
          case softmax::RowOp::SoftmaxBackward: {
            const scalar_t* g = x;
            const scalar_t* o = b + r * C;
            const acc_t dot = sum(C, [&](const auto& ld) { return ld(g) * ld(o); });
            map(C, y, [&](const auto& ld) {
              using T = decltype(ld(g));
              return ld(o) * (ld(g) - T(dot));
            });
            break;
          }
          case softmax::RowOp::LogSoftmaxBackward: {
            const scalar_t* g = x;
            const scalar_t* o = b + r * C;
            const acc_t gs = sum(C, [&](const auto& ld) { return ld(g); });
            map(C, y, [&](const auto& ld) {
              using T = decltype(ld(g));
              return ld(g) - ex(ld(o)) * T(gs);
            });
            break;
          }
        }
      }
    });
  }

  // ------------------------------------------------------------------------ cross-entropy

  template <bool kWeight, bool kProb>
  static void cross_entropy(const softmax::CrossEntropy& job) {
    const int64_t C = job.classes;
    const auto* logits = static_cast<const scalar_t*>(job.logits);
    const auto* wp = static_cast<const scalar_t*>(job.weight);
    const auto* tp = static_cast<const scalar_t*>(job.target_prob);
    const auto* scale = static_cast<const acc_t*>(job.scale);
    auto* row_max = static_cast<acc_t*>(job.row_max);
    auto* log_sum = static_cast<acc_t*>(job.log_sum);
    auto* loss_out = static_cast<acc_t*>(job.loss);
    auto* rw_out = static_cast<acc_t*>(job.row_weight);
    auto* grad = static_cast<scalar_t*>(job.grad);
    const acc_t eps = static_cast<acc_t>(job.label_smoothing);
    const acc_t eps_c = eps / static_cast<acc_t>(C);
    const bool forward = job.pass == softmax::CePass::Forward;
    acc_t weight_sum = static_cast<acc_t>(C);
    if constexpr (kWeight) {
      if (!kProb && eps > 0) weight_sum = sum(C, [&](const auto& ld) { return ld(wp); });
    }
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1));
    at::parallel_for(0, job.rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* x = logits + r * C;
        scalar_t* gr = grad ? grad + r * C : nullptr;
        const acc_t sc = scale ? scale[r] : acc_t(1);
        math::Lse<acc_t> lse;
        if (forward) {
          lse = math::lse_of(max_sum(x, C));
          row_max[r] = lse.max;
          log_sum[r] = lse.log_sum;
        } else {
          lse = {row_max[r], log_sum[r]};
        }
        if constexpr (!kProb) {
          const int64_t t = job.target[r];
          if (t == job.ignore_index) {
            if (forward) loss_out[r] = rw_out[r] = 0;
            if (gr) std::fill(gr, gr + C, scalar_t(0));
            continue;
          }
          const acc_t w_t = kWeight ? static_cast<acc_t>(wp[t]) : acc_t(1);
          const acc_t x_t = static_cast<acc_t>(x[t]);
          if (forward) {
            acc_t smooth = 0;
            if (eps > 0) {
              smooth = sum(C, [&](const auto& ld) {
                if constexpr (kWeight) return ld(wp) * math::minus_lse(ld(x), lse);
                else return math::minus_lse(ld(x), lse);
              });
            }
            loss_out[r] = math::ce_index_loss(-math::minus_lse(x_t, lse), w_t, eps, smooth, C);
            rw_out[r] = w_t;
          }
          if (gr) {
            const acc_t a = math::ce_index_a(w_t, eps, weight_sum, C);
            map(C, gr, [&](const auto& ld) {
              using T = decltype(ld(x));
              const T p = ex(math::minus_lse(ld(x), lse));
              if constexpr (kWeight) return T(sc) * (T(a) * p - T(eps_c) * ld(wp));
              else return T(sc) * (T(a) * p - T(eps_c));
            });
            const acc_t p_t = std::exp(math::minus_lse(x_t, lse));
            gr[t] = static_cast<scalar_t>(
                math::ce_grad(sc, a, p_t, math::ce_index_b(true, w_t, kWeight ? w_t : acc_t(1), eps, C)));
          }
        } else {
          const auto* q = tp + r * C;
          // A = sum_c w_c q_c and sum_c w_c q_c (x_c - lse), q the smoothed target.
          const auto wq = [&](const auto& ld) {
            using T = decltype(ld(x));
            T v = ld(q);
            if (eps > 0) v = v * T(acc_t(1) - eps) + T(eps_c);
            if constexpr (kWeight) v = v * ld(wp);
            return v;
          };
          const acc_t a = sum(C, wq);
          if (forward) {
            const acc_t dot = sum(C, [&](const auto& ld) { return wq(ld) * math::minus_lse(ld(x), lse); });
            loss_out[r] = -dot;
            rw_out[r] = 1;
          }
          if (gr) {
            map(C, gr, [&](const auto& ld) {
              using T = decltype(ld(x));
              return T(sc) * (T(a) * ex(math::minus_lse(ld(x), lse)) - wq(ld));
            });
          }
        }
      }
    });
  }
};

}  // namespace

template <typename scalar_t>
void softmax_rows(const softmax::Rows& job) {
  RowKernels<scalar_t>::rows(job);
}

template <typename scalar_t>
void softmax_cross_entropy(const softmax::CrossEntropy& job) {
  using K = RowKernels<scalar_t>;
  const bool w = job.weight != nullptr, p = job.target_prob != nullptr;
  if (w && p) return K::template cross_entropy<true, true>(job);
  if (w) return K::template cross_entropy<true, false>(job);
  if (p) return K::template cross_entropy<false, true>(job);
  return K::template cross_entropy<false, false>(job);
}

template void softmax_rows<double>(const softmax::Rows&);
template void softmax_rows<float>(const softmax::Rows&);
template void softmax_rows<c10::BFloat16>(const softmax::Rows&);
template void softmax_rows<c10::Half>(const softmax::Rows&);
template void softmax_cross_entropy<double>(const softmax::CrossEntropy&);
template void softmax_cross_entropy<float>(const softmax::CrossEntropy&);
template void softmax_cross_entropy<c10::BFloat16>(const softmax::CrossEntropy&);
template void softmax_cross_entropy<c10::Half>(const softmax::CrossEntropy&);

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
