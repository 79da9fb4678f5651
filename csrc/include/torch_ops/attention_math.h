// Scalar math of the attention family, shared by the CPU kernels
// (csrc/cpu/kernels/attention.h) and the CUDA kernels (cuda/attention.cu): the dropout
// keep-mask (a counter-based hash, so that the backward regenerates the forward's mask
// instead of storing it, on either device, bit for bit) and the probability of one score
// from the row's log-sum-exp. The online softmax is torch_ops/softmax_math.h.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace torch_ops::math {

// splitmix64's finaliser: a bijection of 64-bit integers that mixes every input bit into
// every output bit.
C10_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A uniform number in [0, 1) for element `index` of the stream `seed` (53 bits).
C10_HOST_DEVICE inline double dropout_uniform(uint64_t seed, uint64_t index) {
  const uint64_t h = mix64(mix64(seed ^ 0x9e3779b97f4a7c15ull) + index);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

// Whether element `index` (((b * H + h) * L + i) * S + j) of the attention weights is kept
// by dropout with probability p.
C10_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t index, double p) {
  return dropout_uniform(seed, index) >= p;
}

// The attention probability of a score s (scaled, mask added) in a row whose log-sum-exp is
// lse: exp(s - lse), and 0 for a masked score (-inf) or a row that attends to nothing
// (lse == -inf; PyTorch gives such a row the output 0 and no gradient).
template <typename T>
C10_HOST_DEVICE inline T prob_from_lse(T s, T lse) {
  return lse == -std::numeric_limits<T>::infinity() ? T(0) : ::exp(s - lse);
}

// The gradient of one score: p * (dp - D), D = sum_j p_j dp_j = dot(grad_out_i, out_i).
template <typename T>
C10_HOST_DEVICE inline T score_grad(T p, T dp, T D) {
  return p * (dp - D);
}

}  // namespace torch_ops::math
