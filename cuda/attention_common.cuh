// The pieces of the CUDA attention kernels that both paths use (cuda/attention.cu: the
// warp-per-row kernels for every dtype; cuda/attention_tc.cu: the tensor-core kernels for
// float16 / bfloat16): the kernels' argument block, the block-coordinate division, the warp
// reductions, the score and dropout factor of one element (the conventions: scale, additive
// mask, the dropout hash of torch_ops/attention_math.h), and the host helpers that fill the
// arguments. Header of the cuda/ translation units only.
#pragma once

#include <ATen/OpMathType.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "torch_ops/attention.h"
#include "torch_ops/attention_math.h"

namespace torch_ops::attention {

constexpr int kWarpSize = 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride beyond

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Everything a kernel reads, with typed pointers (unused ones are nullptr).
template <typename scalar_t>
struct Args {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t B, H, Hk, L, S, E, Ev;
  acc_t scale;
  bool causal;
  double dropout_p;     // > 0: dropout
  acc_t dropout_scale;  // 1 / (1 - p)
  uint64_t seed;
  const acc_t* mask;
  int64_t mask_sb, mask_sh, mask_sl;
  const scalar_t *q, *k, *v, *out_in, *grad_out;
  const acc_t *lse_in, *delta;
  scalar_t* out;
  acc_t* lse;
  scalar_t *grad_q, *grad_k, *grad_v;
  acc_t* grad_mask;
  bool vec_qk;  // q and k rows may be read with 16-byte loads
  bool vec_v;   // v and grad_out rows likewise
};

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// a / b and a % b for a >= 0, b > 0 (the block's coordinates): 32-bit when both fit, as a
// 64-bit division is a slow subroutine call on the device.
struct DivMod {
  int64_t q, r;
};
__device__ __forceinline__ DivMod divmod(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) {
    const uint32_t q = static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
    return {q, a - int64_t(q) * b};
  }
  return {a / b, a % b};
}

// A max that returns nan when either side is nan, so that a warp reduction gives every lane
// the same value (the branch on it below is warp-uniform).
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = nan_max(v, __shfl_xor_sync(kFull, v, off));
  return v;
}

// Butterfly sum: every lane ends with the same bits (addition is commutative).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// A grid-stride block of `rows` query rows of one (batch, head): its flat (b * H + h)
// index, b, h, its first row, and the key/value head that the query head reads (GQA).
struct QueryBlock {
  int64_t bh, b, h, i0, kv;
};
template <typename scalar_t>
__device__ __forceinline__ QueryBlock query_block(const Args<scalar_t>& a, int64_t blk, int64_t rows) {
  const DivMod blk_bh = divmod(blk, ceil_div(a.L, rows)), bh_b = divmod(blk_bh.q, a.H);
  const int64_t b = bh_b.q, h = bh_b.r;
  return {blk_bh.q, b, h, blk_bh.r * rows, b * a.Hk + divmod(h, divmod(a.H, a.Hk).q).q};
}

// keep_ij / (1 - p) for element (row, j), row = (b * H + h) * L + i; 1 without dropout.
template <typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> dropout_factor(const Args<scalar_t>& a, int64_t row,
                                                                    int64_t j) {
  using acc_t = at::opmath_type<scalar_t>;
  if (!(a.dropout_p > 0)) return acc_t(1);
  const uint64_t index = static_cast<uint64_t>(row) * static_cast<uint64_t>(a.S) + static_cast<uint64_t>(j);
  return math::dropout_keep(a.seed, index, a.dropout_p) ? a.dropout_scale : acc_t(0);
}

// The score of (b, h, i, j) from dot(q_i, k_j); the caller has checked that it is not masked
// by causality or bounds.
template <typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> score(const Args<scalar_t>& a, at::opmath_type<scalar_t> qk,
                                                           int64_t b, int64_t h, int64_t i, int64_t j) {
  auto s = a.scale * qk;
  if (a.mask != nullptr) s += a.mask[b * a.mask_sb + h * a.mask_sh + i * a.mask_sl + j];
  return s;
}

// ------------------------------------------------------------------------- host helpers
inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline unsigned grid_for(int64_t blocks) { return static_cast<unsigned>(std::min(blocks, kMaxBlocks)); }

template <typename scalar_t>
Args<scalar_t> make_args(const Problem& job) {
  using acc_t = at::opmath_type<scalar_t>;
  Args<scalar_t> a{};
  a.B = job.B;
  a.H = job.H;
  a.Hk = job.Hk;
  a.L = job.L;
  a.S = job.S;
  a.E = job.E;
  a.Ev = job.Ev;
  a.scale = static_cast<acc_t>(job.scale);
  a.causal = job.causal;
  a.dropout_p = job.dropout_p;
  a.dropout_scale = job.dropout_p > 0 ? static_cast<acc_t>(1.0 / (1.0 - job.dropout_p)) : acc_t(1);
  a.seed = job.seed;
  a.mask = static_cast<const acc_t*>(job.mask);
  a.mask_sb = job.mask_sb;
  a.mask_sh = job.mask_sh;
  a.mask_sl = job.mask_sl;
  return a;
}

template <typename scalar_t>
bool vec_ok(int64_t cols, std::initializer_list<const void*> ptrs) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  if (cols % kVec != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// The arguments every kernel takes: the shape and conventions, q, k, v.
template <typename scalar_t, typename Job>
Args<scalar_t> qkv_args(const Job& job) {
  Args<scalar_t> a = make_args<scalar_t>(job);
  a.q = static_cast<const scalar_t*>(job.q);
  a.k = static_cast<const scalar_t*>(job.k);
  a.v = static_cast<const scalar_t*>(job.v);
  a.vec_qk = vec_ok<scalar_t>(job.E, {job.q, job.k});
  return a;
}

// The arguments of the forward kernels.
template <typename scalar_t>
Args<scalar_t> forward_args(const Forward& job) {
  Args<scalar_t> a = qkv_args<scalar_t>(job);
  a.out = static_cast<scalar_t*>(job.out);
  a.lse = static_cast<at::opmath_type<scalar_t>*>(job.lse);
  a.vec_v = vec_ok<scalar_t>(job.Ev, {job.v});
  return a;
}

// The arguments of the backward kernels (delta is set by the caller, which allocates it).
template <typename scalar_t>
Args<scalar_t> backward_args(const Backward& job) {
  using acc_t = at::opmath_type<scalar_t>;
  Args<scalar_t> a = qkv_args<scalar_t>(job);
  a.out_in = static_cast<const scalar_t*>(job.out);
  a.grad_out = static_cast<const scalar_t*>(job.grad_out);
  a.lse_in = static_cast<const acc_t*>(job.lse);
  a.grad_q = static_cast<scalar_t*>(job.grad_q);
  a.grad_k = static_cast<scalar_t*>(job.grad_k);
  a.grad_v = static_cast<scalar_t*>(job.grad_v);
  a.grad_mask = static_cast<acc_t*>(job.grad_mask);
  a.vec_v = vec_ok<scalar_t>(job.Ev, {job.v, job.grad_out});
  return a;
}

// The tensor-core path (cuda/attention_tc.cu): float16 / bfloat16, head dimensions that are
// multiples of 8 up to 128, compute capability 8.0 or newer. Each returns false, having done
// nothing, when the job is not one it takes (then the warp-per-row kernels run).
bool forward_tensor_core(const Forward& job);
bool backward_tensor_core(const Backward& job);

}  // namespace torch_ops::attention
