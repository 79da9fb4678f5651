// The attention family on CUDA: the registrations and the memory-efficient kernels
// (FlashAttention-2 scheme: the L x S scores are never stored, except as the optional
// grad_mask output). The math shared with the CPU kernels is torch_ops/attention_math.h
// (dropout hash, probability from the log-sum-exp, score gradient) and
// torch_ops/softmax_math.h (online max / sum merge); the helpers both CUDA paths use are
// cuda/attention_common.cuh; this file holds the indexing, the memory movement and the
// launches of the simple path (no tensor cores): every dtype and head dimension. float16 /
// bfloat16 with head dimensions that are multiples of 8 up to 128 on compute capability 8.0+
// go to the tensor-core path first (cuda/attention_tc.cu); the rest comes here.
//
// Layout shared by the three main kernels: a block of kWarps = 8 warps, one row per warp;
// tiles of kTile = 32 rows of the "other" side (keys for forward / grad_q, queries for
// grad_kv) are staged in shared memory in the accumulation type (16-byte loads when
// aligned), one row per lane. Head dimensions are processed in chunks of kD columns, kD =
// 32, 64 or 128 (a template parameter: the smallest that holds max(E, Ev)), zero-padded, so
// a dot product is an unrolled loop of kD terms and a lane keeps kD / 32 accumulators per
// output row in registers. E, Ev <= 128 (64 for double) is one chunk: the fast path. Larger
// head dimensions loop over chunks for the dot products and make one pass per chunk of the
// output (recomputing the scores): slower, any size.
//   * forward_kernel: a warp per query row i (the block: kWarps consecutive rows of one
//     (b, h)). Per key tile, lane l computes the score of key j0 + l (the q row is in shared
//     memory, read as a broadcast; the K tile has a padded stride: conflict-free), the warp
//     merges the tile into the row's online (max, sum), then each lane accumulates its
//     kD / 32 output columns (registers) over the 32 keys (weights broadcast by shuffle).
//     Ev > kD: one pass per kD columns of the output (scores recomputed). With kDelta it
//     is the backward's D pass for float16 / bfloat16: the probabilities from the saved lse,
//     O_i in float, D_i = dot(grad_out_i, O_i) (the output rounded to the dtype would make
//     dp - D cancel: gradients several ulps off).
//   * delta_kernel: D_i = dot(grad_out_i, out_i) for float / double, a warp per row, into a
//     scratch buffer.
//   * grad_q_kernel: a warp per query row, lane per key as above: the score and
//     dot(grad_out_i, v_j) for each key of the tile, ds, grad_mask (written here, coalesced),
//     then grad_q's kD / 32 columns per lane accumulated over the tile. E > kD: one pass per
//     kD columns of grad_q.
//   * grad_kv_kernel: a warp per key row j (the block: kWarps consecutive keys of one
//     (b, kv head)), looping over the queries of every query head of the group, lane per
//     query in a tile; grad_k's and grad_v's kD / 32 columns per lane in registers.
// No atomics: every output element is owned by one lane, sums run in a fixed order, so the
// results are deterministic. Indices are 64-bit; float16 / bfloat16 are computed in float.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "torch_ops/attention.h"
#include "torch_ops/attention_math.h"
#include "torch_ops/softmax_math.h"
#include "attention_common.cuh"

namespace torch_ops::attention {
namespace {

constexpr int kWarps = 8;                      // rows per block (one per warp)
constexpr int kThreads = kWarps * kWarpSize;   // 256
constexpr int kTile = kWarpSize;               // rows of a shared-memory tile: one per lane

// The widest head-dimension chunk: 128 columns (64 for double, so that the tiles of the
// backward stay under 48 KiB of static shared memory).
template <typename scalar_t>
constexpr int kMaxChunk = sizeof(at::opmath_type<scalar_t>) > 4 ? 64 : 128;

// Chunks of kD columns for a dimension of n (at least one, so that a zero-size head
// dimension still runs the loops once, on zeros).
template <int kD>
__device__ __forceinline__ int num_chunks(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, ceil_div(n, kD)));
}

// dst[r][c] = src[(r0 + r) * cols + c0 + c] for r < kTile, c < kD, converted to acc_t; 0
// outside the (rows x cols) matrix. The whole block takes part (no barrier inside).
template <int kD, int kLd, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_tile(acc_t (*dst)[kLd], const scalar_t* src, int64_t rows, int64_t cols,
                                          int64_t r0, int64_t c0, bool vec) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  static_assert(kD % kVec == 0, "a chunk holds whole 16-byte packs");
  if (vec) {  // src 16-byte aligned, cols % kVec == 0: a pack is wholly inside or outside
    constexpr int kPacks = kD / kVec;
    for (int idx = threadIdx.x; idx < kTile * kPacks; idx += blockDim.x) {
      const int r = idx / kPacks, c = (idx % kPacks) * kVec;
      const int64_t gr = r0 + r, gc = c0 + c;
      if (gr < rows && gc < cols) {
        const Pack<scalar_t, kVec> p = *reinterpret_cast<const Pack<scalar_t, kVec>*>(src + gr * cols + gc);
#pragma unroll
        for (int u = 0; u < kVec; ++u) dst[r][c + u] = static_cast<acc_t>(p.v[u]);
      } else {
#pragma unroll
        for (int u = 0; u < kVec; ++u) dst[r][c + u] = acc_t(0);
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * kD; idx += blockDim.x) {
      const int r = idx / kD, c = idx % kD;
      const int64_t gr = r0 + r, gc = c0 + c;
      dst[r][c] = (gr < rows && gc < cols) ? static_cast<acc_t>(src[gr * cols + gc]) : acc_t(0);
    }
  }
}

// dst[c] = row[c0 + c] for c < kD (0 past cols, or everywhere when row is nullptr); one warp.
template <int kD, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_row(acc_t* dst, const scalar_t* row, int64_t cols, int64_t c0, int lane) {
#pragma unroll
  for (int c = lane; c < kD; c += kWarpSize)
    dst[c] = (row != nullptr && c0 + c < cols) ? static_cast<acc_t>(row[c0 + c]) : acc_t(0);
}

template <int kD, typename acc_t>
__device__ __forceinline__ acc_t dot(const acc_t* x, const acc_t* y) {
  acc_t s = 0;
#pragma unroll
  for (int e = 0; e < kD; ++e) s += x[e] * y[e];
  return s;
}

// ------------------------------------------------------------------------------ forward
// kDelta = false: out and lse. kDelta = true (float16 / bfloat16 backward): delta[row] =
// dot(grad_out_row, O_row) with O recomputed in acc_t from the saved lse (a.lse_in): the
// output rounded to the dtype would make dp - D cancel.
template <typename scalar_t, int kD, bool kDelta>
__global__ void __launch_bounds__(kThreads) forward_kernel(const Args<scalar_t> a,
                                                           at::opmath_type<scalar_t>* delta) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kC = kD / kWarpSize;  // output columns per lane in one pass
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  __shared__ acc_t k_s[kTile][kD + 1];  // padded: lane l reads row l
  __shared__ acc_t v_s[kTile][kD];      // lanes read across a row
  __shared__ acc_t q_s[kWarps][kD];     // the warp's query row, read as a broadcast
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nE = num_chunks<kD>(a.E), nV = num_chunks<kD>(a.Ev);
  const int64_t blocks = a.B * a.H * ceil_div(a.L, kWarps);
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const QueryBlock qb = query_block(a, blk, kWarps);
    const int64_t bh = qb.bh, b = qb.b, h = qb.h, i0 = qb.i0, kv = qb.kv, i = i0 + warp;
    const bool row_ok = i < a.L;
    const int64_t row = bh * a.L + i;
    const scalar_t* q = row_ok ? a.q + row * a.E : nullptr;
    const scalar_t* k = a.k + kv * a.S * a.E;
    const scalar_t* v = a.v + kv * a.S * a.Ev;
    // Keys any row of the block sees: causal rows i < i0 + kWarps see j <= i.
    const int64_t s_end = a.causal ? std::min(a.S, std::min(a.L, i0 + kWarps)) : a.S;
    const acc_t lse = kDelta && row_ok ? a.lse_in[row] : kNegInf;
    acc_t d_sum = 0;  // kDelta: the lane's part of dot(grad_out_row, O_row)
    for (int pass = 0; pass < nV; ++pass) {
      math::MaxSum<acc_t> run = math::MaxSum<acc_t>::empty();
      acc_t acc[kC];
#pragma unroll
      for (int c = 0; c < kC; ++c) acc[c] = 0;
      for (int64_t j0 = 0; j0 < s_end; j0 += kTile) {
        const int64_t j = j0 + lane;
        acc_t qk = 0;
        for (int t = 0; t < nE; ++t) {
          __syncthreads();  // the previous readers of the tiles are done
          load_tile<kD>(k_s, k, a.S, a.E, j0, int64_t(t) * kD, a.vec_qk);
          load_row<kD>(q_s[warp], q, a.E, int64_t(t) * kD, lane);
          if (t == nE - 1) load_tile<kD>(v_s, v, a.S, a.Ev, j0, int64_t(pass) * kD, a.vec_v);
          __syncthreads();
          qk += dot<kD>(q_s[warp], k_s[lane]);
        }
        acc_t s = kNegInf;
        if (row_ok && j < a.S && !(a.causal && j > i)) s = score(a, qk, b, h, i, j);
        if constexpr (kDelta) {  // the probabilities from the lse: no rescaling
          const acc_t pr = math::prob_from_lse(s, lse);
          const acc_t w = pr != acc_t(0) ? pr * dropout_factor(a, row, j) : acc_t(0);
#pragma unroll 8
          for (int r = 0; r < kTile; ++r) {
            const acc_t wr = __shfl_sync(kFull, w, r);
#pragma unroll
            for (int c = 0; c < kC; ++c) acc[c] += wr * v_s[r][lane + c * kWarpSize];
          }
          continue;
        }
        // Merge the tile into the row's (max, sum), relative to the new max m: the tile is
        // (m, sum_j exp(s_j - m)). Skipped while every score so far is -inf (warp-uniform).
        const acc_t m = nan_max(run.max, warp_max(s));
        if (m != kNegInf) {
          const acc_t e = ::exp(s - m);            // 0 for a masked score
          const acc_t alpha = ::exp(run.max - m);  // 0 while the row was empty
          run = math::online_merge(run, math::MaxSum<acc_t>{m, warp_sum(e)});
          const acc_t w = e != acc_t(0) ? e * dropout_factor(a, row, j) : acc_t(0);
#pragma unroll
          for (int c = 0; c < kC; ++c) acc[c] *= alpha;
#pragma unroll 8
          for (int r = 0; r < kTile; ++r) {
            const acc_t wr = __shfl_sync(kFull, w, r);
#pragma unroll
            for (int c = 0; c < kC; ++c) acc[c] += wr * v_s[r][lane + c * kWarpSize];
          }
        }
      }
      if (kDelta && row_ok) {
        const scalar_t* g = a.grad_out + row * a.Ev;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          const int64_t d = int64_t(pass) * kD + lane + c * kWarpSize;
          if (d < a.Ev) d_sum += static_cast<acc_t>(g[d]) * acc[c];
        }
      } else if (!kDelta && row_ok) {
        const bool empty = run.max == kNegInf;  // attends to nothing: out 0, lse -inf
        const acc_t inv = empty ? acc_t(0) : acc_t(1) / run.sum;
        scalar_t* o = a.out + row * a.Ev;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          const int64_t d = int64_t(pass) * kD + lane + c * kWarpSize;
          if (d < a.Ev) o[d] = static_cast<scalar_t>(acc[c] * inv);
        }
        if (pass == 0 && lane == 0) a.lse[row] = empty ? kNegInf : run.max + static_cast<acc_t>(::log(run.sum));
      }
    }
    if (kDelta) {
      d_sum = warp_sum(d_sum);
      if (row_ok && lane == 0) delta[row] = d_sum;
    }
  }
}

// ----------------------------------------------------------------------------- backward
// D_i = dot(grad_out_i, out_i): a warp per row.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) delta_kernel(const Args<scalar_t> a, at::opmath_type<scalar_t>* delta,
                                                         int64_t rows) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int64_t r = int64_t(blockIdx.x) * kWarps + warp; r < rows; r += int64_t(gridDim.x) * kWarps) {
    const scalar_t* g = a.grad_out + r * a.Ev;
    const scalar_t* o = a.out_in + r * a.Ev;
    acc_t s = 0;
    for (int64_t d = lane; d < a.Ev; d += kWarpSize) s += static_cast<acc_t>(g[d]) * static_cast<acc_t>(o[d]);
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

// grad_q and grad_mask: a warp per query row, lane per key of a tile.
template <typename scalar_t, int kD>
__global__ void __launch_bounds__(kThreads) grad_q_kernel(const Args<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kC = kD / kWarpSize;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  __shared__ acc_t k_s[kTile][kD + 1];
  __shared__ acc_t v_s[kTile][kD + 1];
  __shared__ acc_t q_s[kWarps][kD];
  __shared__ acc_t g_s[kWarps][kD];  // grad_out rows
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nE = num_chunks<kD>(a.E), nV = num_chunks<kD>(a.Ev), steps = std::max(nE, nV);
  const int passes = a.grad_q != nullptr ? nE : 1;  // one per kD columns of grad_q
  const int64_t blocks = a.B * a.H * ceil_div(a.L, kWarps);
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const QueryBlock qb = query_block(a, blk, kWarps);
    const int64_t bh = qb.bh, b = qb.b, h = qb.h, i0 = qb.i0, kv = qb.kv, i = i0 + warp;
    const bool row_ok = i < a.L;
    const int64_t row = bh * a.L + i;
    const scalar_t* q = row_ok ? a.q + row * a.E : nullptr;
    const scalar_t* go = row_ok ? a.grad_out + row * a.Ev : nullptr;
    const scalar_t* k = a.k + kv * a.S * a.E;
    const scalar_t* v = a.v + kv * a.S * a.Ev;
    const acc_t lse = row_ok ? a.lse_in[row] : kNegInf;
    const acc_t delta = row_ok ? a.delta[row] : acc_t(0);
    const int64_t s_end = a.causal ? std::min(a.S, std::min(a.L, i0 + kWarps)) : a.S;
    for (int pass = 0; pass < passes; ++pass) {
      acc_t dq[kC];
#pragma unroll
      for (int c = 0; c < kC; ++c) dq[c] = 0;
      for (int64_t j0 = 0; j0 < s_end; j0 += kTile) {
        const int64_t j = j0 + lane;
        acc_t qk = 0, gv = 0;
        for (int t = 0; t < steps; ++t) {
          __syncthreads();
          if (t < nE) {
            load_tile<kD>(k_s, k, a.S, a.E, j0, int64_t(t) * kD, a.vec_qk);
            load_row<kD>(q_s[warp], q, a.E, int64_t(t) * kD, lane);
          }
          if (t < nV) {
            load_tile<kD>(v_s, v, a.S, a.Ev, j0, int64_t(t) * kD, a.vec_v);
            load_row<kD>(g_s[warp], go, a.Ev, int64_t(t) * kD, lane);
          }
          __syncthreads();
          if (t < nE) qk += dot<kD>(q_s[warp], k_s[lane]);
          if (t < nV) gv += dot<kD>(g_s[warp], v_s[lane]);
        }
        acc_t ds = 0;
        if (row_ok && j < a.S && !(a.causal && j > i)) {
          const acc_t p = math::prob_from_lse(score(a, qk, b, h, i, j), lse);
          ds = math::score_grad(p, gv * dropout_factor(a, row, j), delta);
        }
        if (pass == 0 && a.grad_mask != nullptr && row_ok && j < a.S) a.grad_mask[row * a.S + j] = ds;
        if (a.grad_q != nullptr) {
          if (pass != nE - 1) {  // k_s holds chunk nE - 1; this pass needs chunk `pass`
            __syncthreads();
            load_tile<kD>(k_s, k, a.S, a.E, j0, int64_t(pass) * kD, a.vec_qk);
            __syncthreads();
          }
#pragma unroll 8
          for (int r = 0; r < kTile; ++r) {
            const acc_t dsr = __shfl_sync(kFull, ds, r);
#pragma unroll
            for (int c = 0; c < kC; ++c) dq[c] += dsr * k_s[r][lane + c * kWarpSize];
          }
        }
      }
      if (row_ok && a.grad_q != nullptr) {
        scalar_t* gq = a.grad_q + row * a.E;
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          const int64_t e = int64_t(pass) * kD + lane + c * kWarpSize;
          if (e < a.E) gq[e] = static_cast<scalar_t>(a.scale * dq[c]);
        }
      }
      // Causal: the keys past the block's last tile get no gradient.
      if (pass == 0 && row_ok && a.grad_mask != nullptr)
        for (int64_t jj = ceil_div(s_end, kTile) * kTile + lane; jj < a.S; jj += kWarpSize)
          a.grad_mask[row * a.S + jj] = acc_t(0);
    }
  }
}

// grad_k and grad_v: a warp per key row, lane per query of a tile, over the group's heads.
template <typename scalar_t, int kD>
__global__ void __launch_bounds__(kThreads) grad_kv_kernel(const Args<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kC = kD / kWarpSize;
  __shared__ acc_t q_s[kTile][kD + 1];
  __shared__ acc_t g_s[kTile][kD + 1];  // grad_out rows
  __shared__ acc_t k_s[kWarps][kD];
  __shared__ acc_t v_s[kWarps][kD];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int nE = num_chunks<kD>(a.E), nV = num_chunks<kD>(a.Ev), steps = std::max(nE, nV);
  // One pass per kD columns of grad_k / grad_v.
  const int passes = std::max(a.grad_k != nullptr ? nE : 0, a.grad_v != nullptr ? nV : 0);
  const int64_t group = divmod(a.H, a.Hk).q;
  const int64_t col_blocks = ceil_div(a.S, kWarps);
  const int64_t blocks = a.B * a.Hk * col_blocks;
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const DivMod blk_kv = divmod(blk, col_blocks), kv_b = divmod(blk_kv.q, a.Hk);
    const int64_t kv = blk_kv.q, b = kv_b.q, hk = kv_b.r;
    const int64_t j0 = blk_kv.r * kWarps, j = j0 + warp;
    const bool key_ok = j < a.S;
    const scalar_t* k = key_ok ? a.k + (kv * a.S + j) * a.E : nullptr;
    const scalar_t* v = key_ok ? a.v + (kv * a.S + j) * a.Ev : nullptr;
    // Causal: queries i < j0 see none of the block's keys.
    const int64_t i_begin = a.causal ? j0 : 0;
    for (int pass = 0; pass < passes; ++pass) {
      const bool do_k = a.grad_k != nullptr && pass < nE, do_v = a.grad_v != nullptr && pass < nV;
      acc_t dk[kC], dv[kC];
#pragma unroll
      for (int c = 0; c < kC; ++c) dk[c] = dv[c] = 0;
      for (int64_t g = 0; g < group; ++g) {
        const int64_t h = hk * group + g, bh = b * a.H + h;
        const scalar_t* qh = a.q + bh * a.L * a.E;
        const scalar_t* gh = a.grad_out + bh * a.L * a.Ev;
        for (int64_t i0 = i_begin; i0 < a.L; i0 += kTile) {
          const int64_t i = i0 + lane, row = bh * a.L + i;
          acc_t qk = 0, gv = 0;
          for (int t = 0; t < steps; ++t) {
            __syncthreads();
            if (t < nE) {
              load_tile<kD>(q_s, qh, a.L, a.E, i0, int64_t(t) * kD, a.vec_qk);
              load_row<kD>(k_s[warp], k, a.E, int64_t(t) * kD, lane);
            }
            if (t < nV) {
              load_tile<kD>(g_s, gh, a.L, a.Ev, i0, int64_t(t) * kD, a.vec_v);
              load_row<kD>(v_s[warp], v, a.Ev, int64_t(t) * kD, lane);
            }
            __syncthreads();
            if (t < nE) qk += dot<kD>(q_s[lane], k_s[warp]);
            if (t < nV) gv += dot<kD>(g_s[lane], v_s[warp]);
          }
          acc_t pd = 0, ds = 0;  // dropped probability (for grad_v), score gradient
          if (key_ok && i < a.L && !(a.causal && j > i)) {
            const acc_t p = math::prob_from_lse(score(a, qk, b, h, i, j), a.lse_in[row]);
            const acc_t f = dropout_factor(a, row, j);
            pd = p * f;
            ds = math::score_grad(p, gv * f, a.delta[row]);
          }
          // q_s / g_s hold chunks nE - 1 / nV - 1; this pass needs chunk `pass`.
          const bool reload_q = do_k && pass != nE - 1, reload_g = do_v && pass != nV - 1;
          if (reload_q || reload_g) {
            __syncthreads();
            if (reload_q) load_tile<kD>(q_s, qh, a.L, a.E, i0, int64_t(pass) * kD, a.vec_qk);
            if (reload_g) load_tile<kD>(g_s, gh, a.L, a.Ev, i0, int64_t(pass) * kD, a.vec_v);
            __syncthreads();
          }
#pragma unroll 8
          for (int r = 0; r < kTile; ++r) {
            const acc_t pdr = __shfl_sync(kFull, pd, r), dsr = __shfl_sync(kFull, ds, r);
            if (do_v) {
#pragma unroll
              for (int c = 0; c < kC; ++c) dv[c] += pdr * g_s[r][lane + c * kWarpSize];
            }
            if (do_k) {
#pragma unroll
              for (int c = 0; c < kC; ++c) dk[c] += dsr * q_s[r][lane + c * kWarpSize];
            }
          }
        }
      }
      if (key_ok) {
#pragma unroll
        for (int c = 0; c < kC; ++c) {
          const int64_t d = int64_t(pass) * kD + lane + c * kWarpSize;
          if (do_k && d < a.E) a.grad_k[(kv * a.S + j) * a.E + d] = static_cast<scalar_t>(a.scale * dk[c]);
          if (do_v && d < a.Ev) a.grad_v[(kv * a.S + j) * a.Ev + d] = static_cast<scalar_t>(dv[c]);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ launchers

// Calls f with the head-dimension chunk kD (std::integral_constant): the smallest of 32, 64,
// 128 that holds max(E, Ev), else the widest (several chunks).
template <typename scalar_t, typename F>
void with_chunk(int64_t E, int64_t Ev, F&& f) {
  const int64_t d = std::max(E, Ev);
  if (d <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (d <= 64 || kMaxChunk<scalar_t> == 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    if constexpr (kMaxChunk<scalar_t> >= 128) f(std::integral_constant<int, 128>{});
  }
}


void forward_cuda(const Forward& job) {
  if (job.B * job.H * job.L == 0) return;
  TORCH_CHECK(job.Hk > 0 && job.H % job.Hk == 0, "torch_ops.attention: expected the query heads (", job.H,
              ") to be a multiple of the key/value heads (", job.Hk, ")");
  const c10::cuda::CUDAGuard guard(job.device_index);
  if (forward_tensor_core(job)) return;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.attention", [&] {
    const Args<scalar_t> a = forward_args<scalar_t>(job);
    const unsigned grid = grid_for(job.B * job.H * ceil_div(job.L, kWarps));
    with_chunk<scalar_t>(job.E, job.Ev, [&](auto chunk) {
      forward_kernel<scalar_t, decltype(chunk)::value, false><<<grid, kThreads, 0, stream>>>(a, nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void backward_cuda(const Backward& job) {
  const int64_t rows = job.B * job.H * job.L;
  const bool want_q = job.grad_q != nullptr || job.grad_mask != nullptr;
  const bool want_kv = (job.grad_k != nullptr || job.grad_v != nullptr) && job.B * job.Hk * job.S > 0;
  if ((rows == 0 || !want_q) && !want_kv) return;
  TORCH_CHECK(job.Hk > 0 && job.H % job.Hk == 0, "torch_ops.attention_backward: expected the query heads (", job.H,
              ") to be a multiple of the key/value heads (", job.Hk, ")");
  const c10::cuda::CUDAGuard guard(job.device_index);
  if (backward_tensor_core(job)) return;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.attention_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Args<scalar_t> a = backward_args<scalar_t>(job);
    // D_i = dot(grad_out_i, O_i), read by both gradient kernels: from the output for float /
    // double; for float16 / bfloat16 with O recomputed in float (the rounded output would make
    // dp - D cancel).
    at::Tensor delta;
    if (rows > 0) {
      delta = at::empty({rows}, at::TensorOptions()
                                    .dtype(c10::CppTypeToScalarType<acc_t>::value)
                                    .device(c10::Device(c10::DeviceType::CUDA, job.device_index)));
      a.delta = delta.data_ptr<acc_t>();
    }
    with_chunk<scalar_t>(job.E, job.Ev, [&](auto chunk) {
      constexpr int kD = decltype(chunk)::value;
      if (rows > 0) {
        if constexpr (std::is_same_v<scalar_t, acc_t>) {
          delta_kernel<scalar_t><<<grid_for(ceil_div(rows, kWarps)), kThreads, 0, stream>>>(a, delta.data_ptr<acc_t>(),
                                                                                            rows);
        } else {
          forward_kernel<scalar_t, kD, true><<<grid_for(job.B * job.H * ceil_div(job.L, kWarps)), kThreads, 0, stream>>>(
              a, delta.data_ptr<acc_t>());
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (rows > 0 && want_q) {
        grad_q_kernel<scalar_t, kD><<<grid_for(job.B * job.H * ceil_div(job.L, kWarps)), kThreads, 0, stream>>>(a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (want_kv) {
        grad_kv_kernel<scalar_t, kD><<<grid_for(job.B * job.Hk * ceil_div(job.S, kWarps)), kThreads, 0, stream>>>(a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CUDA) = Launchers{&forward_cuda, &backward_cuda};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) { register_kernels(m); }

}  // namespace torch_ops::attention
