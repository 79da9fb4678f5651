// Scalar math of the softmax family, shared by the CPU kernels (csrc/cpu/kernels/softmax.h)
// and the CUDA kernels (cuda/softmax.cu): the online max / sum update and its merge, and the
// loss and gradient of one cross-entropy row from its statistics. T is the accumulation
// type (float, or double for float64 inputs).
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace torch_ops::math {

// A running (max, sum of exp(x - max)) over part of a row: the online softmax.
template <typename T>
struct MaxSum {
  T max;
  T sum;
  C10_HOST_DEVICE static MaxSum empty() { return {-std::numeric_limits<T>::infinity(), T(0)}; }
};

// Adds one value. A row of -inf (or with +inf / nan) ends with a nan sum, as PyTorch's
// softmax of such a row is nan.
template <typename T>
C10_HOST_DEVICE inline void online_update(MaxSum<T>& a, T x) {
  if (x > a.max) {
    a.sum = a.sum * ::exp(a.max - x) + T(1);
    a.max = x;
  } else {
    a.sum += ::exp(x - a.max);
  }
}

// Merges two partial results (of disjoint parts of one row). Empty parts (sum 0) are skipped
// so that -inf - -inf never appears for them.
template <typename T>
C10_HOST_DEVICE inline MaxSum<T> online_merge(MaxSum<T> a, MaxSum<T> b) {
  if (b.sum == T(0) && b.max == -std::numeric_limits<T>::infinity()) return a;
  if (a.sum == T(0) && a.max == -std::numeric_limits<T>::infinity()) return b;
  if (b.max > a.max) return {b.max, a.sum * ::exp(a.max - b.max) + b.sum};
  return {a.max, a.sum + b.sum * ::exp(b.max - a.max)};
}

// A row's log-sum-exp kept as (max, log_sum = log(sum exp(x - max))); x - lse is computed as
// (x - max) - log_sum. For a confident row (one logit far above the others) x_t - lse is
// tiny, and x_t - (max + log_sum), with lse rounded at the magnitude of the logits, would lose
// it: the loss and gradient of such a row (and log_softmax near 0) would be off by an ulp of
// the logits, not of the result. cross_entropy_forward saves both for the backward
// (row_max, log_sum).
template <typename T>
struct Lse {
  T max, log_sum;
};
template <typename T>
C10_HOST_DEVICE inline Lse<T> lse_of(MaxSum<T> a) {
  return {a.max, static_cast<T>(::log(a.sum))};
}
// x - lse for x a T or a vector of T.
template <typename V, typename T>
C10_HOST_DEVICE inline V minus_lse(const V& x, const Lse<T>& l) {
  return (x - V(l.max)) - V(l.log_sum);
}

// ------------------------------------------------------------------------ cross-entropy
// One row with logits x, p = softmax(x), lse = logsumexp(x), class weights w (1 without),
// label smoothing eps over C classes, as PyTorch defines cross_entropy:
//   class index t:  loss = (1 - eps) * w_t * (lse - x_t) + eps / C * sum_c w_c * (lse - x_c)
//   probabilities:  loss = sum_c w_c * q_c * (lse - x_c),   q = (1 - eps) * target + eps / C
// The gradient is A * p_c - B_c with
//   class index t:  A = (1 - eps) * w_t + eps / C * sum_c w_c,  B_c = (1 - eps) * w_t * [c == t] + eps / C * w_c
//   probabilities:  A = sum_c w_c * q_c,                        B_c = w_c * q_c

// nlp_t = lse - x_t (= -log p_t); smooth = sum_c w_c * (x_c - lse) (only read when eps > 0).
template <typename T>
C10_HOST_DEVICE inline T ce_index_loss(T nlp_t, T w_t, T eps, T smooth, int64_t classes) {
  T loss = w_t * nlp_t;
  if (eps > T(0)) loss = (T(1) - eps) * loss - eps / T(classes) * smooth;
  return loss;
}

template <typename T>
C10_HOST_DEVICE inline T ce_index_a(T w_t, T eps, T weight_sum, int64_t classes) {
  return (T(1) - eps) * w_t + eps / T(classes) * weight_sum;
}

template <typename T>
C10_HOST_DEVICE inline T ce_index_b(bool is_target, T w_t, T w_c, T eps, int64_t classes) {
  return (is_target ? (T(1) - eps) * w_t : T(0)) + eps / T(classes) * w_c;
}

// q_c, the smoothed probability target.
template <typename T>
C10_HOST_DEVICE inline T ce_smoothed(T target, T eps, int64_t classes) {
  return eps > T(0) ? (T(1) - eps) * target + eps / T(classes) : target;
}

template <typename T>
C10_HOST_DEVICE inline T ce_grad(T scale, T a, T p, T b) {
  return scale * (a * p - b);
}

}  // namespace torch_ops::math
