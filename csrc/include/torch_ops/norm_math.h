// The formulas of layer_norm / rms_norm, shared by the CPU kernels (instantiated with
// at::vec::Vectorized and with the opmath scalar) and the CUDA kernels. Every function is a
// template on the value type V so one formula serves the vector body, the scalar tail and
// the device code.
//
// Statistics: a row is summed in the opmath type; the CPU kernels take two passes over each
// L1-sized chunk of the row (mean, then the centred sum of squares: stable, no
// cancellation) and combine the chunks with welford_combine, the CUDA
// kernels combine per-thread partial moments (count, mean, M2) with Chan's parallel
// Welford update (welford_combine) across the warps and threads of a block.
#pragma once

#include <c10/macros/Macros.h>
#include <cmath>
#include <cstdint>

namespace torch_ops::math {

// rstd from the (biased) variance or mean square: 1 / sqrt(v + eps).
template <typename T>
C10_HOST_DEVICE inline T norm_rstd(T var, T eps) {
#if defined(__CUDA_ARCH__)
  return T(1) / ::sqrt(var + eps);
#else
  return T(1) / std::sqrt(var + eps);
#endif
}

// xhat = (x - mean) * rstd (rms: mean = 0).
template <typename V>
C10_HOST_DEVICE inline V norm_xhat(const V& x, const V& mean, const V& rstd) {
  return (x - mean) * rstd;
}

// Chan et al.'s combination of two partial moments (count n, mean m, sum of squared
// deviations M2): (n_a, m_a, M2_a) += (n_b, m_b, M2_b).
template <typename T>
struct Moments {
  T n, mean, m2;
};
template <typename T>
C10_HOST_DEVICE inline Moments<T> welford_combine(const Moments<T>& a, const Moments<T>& b) {
  if (b.n == T(0)) return a;
  if (a.n == T(0)) return b;
  const T n = a.n + b.n;
  const T delta = b.mean - a.mean;
  const T wb = b.n / n;
  return Moments<T>{n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.n * wb};
}
// One more value x into running moments.
template <typename T>
C10_HOST_DEVICE inline Moments<T> welford_push(const Moments<T>& a, T x) {
  const T n = a.n + T(1);
  const T delta = x - a.mean;
  const T mean = a.mean + delta / n;
  return Moments<T>{n, mean, a.m2 + delta * (x - mean)};
}

// The input gradient of a row, from its two row sums divided by N:
//   c_g   = mean_j(g_j)            (layer_norm only; 0 for rms)
//   c_gx  = mean_j(g_j * xhat_j)
//   dx_j  = rstd * (g_j - c_g - xhat_j * c_gx),   g_j = dy_j * w_j
template <typename V>
C10_HOST_DEVICE inline V norm_grad_input(const V& g, const V& xhat, const V& rstd, const V& c_g, const V& c_gx) {
  return rstd * (g - c_g - xhat * c_gx);
}

}  // namespace torch_ops::math
