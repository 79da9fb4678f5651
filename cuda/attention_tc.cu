// The attention family on CUDA, tensor-core path: float16 / bfloat16, head dimensions (E and
// Ev) that are multiples of 8 up to 128, compute capability 8.0 or newer. The same
// FlashAttention-2 scheme as the warp-per-row kernels of cuda/attention.cu (which run every
// other case), with the block products on tensor cores through the WMMA API (16 x 16 x 16
// fragments of float16 / bfloat16, float accumulators).
//
// Correctness never depends on the fragments' register layout, which is opaque: a fragment
// is only loaded from shared memory, multiplied, and stored to shared memory. Every
// element-wise step (mask, causal, online softmax, probabilities from the log-sum-exp,
// dropout, score gradient, the output's rescaling) is done by threads on shared-memory tiles
// that they index themselves.
//
// Layout shared by the kernels: a block of kTcWarps = 4 warps owns kBlock = 64 rows of one
// side (queries for forward / D / grad_q, keys for grad_kv), a strip of 16 rows per warp, and
// loops over tiles of kBlock rows of the other side, staged in shared memory in the input
// dtype (16-byte loads when aligned), zero-padded to kD columns (kD = 32, 64 or 128: the
// smallest that holds max(E, Ev), a template parameter). A warp computes the 16 x 64 score
// strip of its rows (ceil(E / 16) fragment products per 16 x 16 tile) into a float tile;
// after a __syncwarp the two lanes 2r, 2r + 1 own row r of the strip (even / odd columns) for
// the element-wise work and write the weights back in the input dtype; the warp then
// multiplies them into its accumulators. Everything after the tile loads is warp-local, so
// warps synchronise among themselves only around the loads.
//   * tc_forward_kernel: per query block, the online softmax; the output accumulator O
//     (64 x kD, float) lives in shared memory, rescaled per row by its lane pair, and P V is
//     accumulated into it by loading it as an accumulator fragment.
//   * tc_grad_q_kernel<kDelta = true>: the backward's D_i = dot(grad_out_i, O_i) computed as
//     sum_j P_ij dP_ij z_ij from S = Q K^T and dP = dO V^T (P in float from the saved lse, z
//     the dropout factor): O in float, as the CPU backward recomputes it. The output rounded
//     to float16 / bfloat16 (or P rounded for a P V product) would make dp - D cancel:
//     gradients several ulps off. O(L) scratch.
//   * tc_grad_q_kernel<kDelta = false>: per query block: S and dP per key tile, the score
//     gradient dS (and grad_mask, in float), grad_q += dS K in fragment accumulators.
//   * tc_grad_kv_kernel: per key block of one (b, kv head), looping over the query blocks of
//     every query head of the group: S^T = K Q^T and dP^T = V dO^T, then grad_v += P^T dO and
//     grad_k += dS^T Q in fragment accumulators.
// No atomics: every output element is written by one thread, sums run in a fixed order, so
// the results are deterministic. The tiles need more than the 48 KiB of static shared memory
// (110-121 KiB at kD = 128): dynamic shared memory, with the kernel's limit raised by
// cudaFuncSetAttribute, and the path is skipped on a device whose opt-in limit is smaller.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "attention_common.cuh"
#include "torch_ops/attention.h"
#include "torch_ops/attention_math.h"
#include "torch_ops/softmax_math.h"

namespace torch_ops::attention {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * kWarpSize;  // 128
constexpr int kFrag = 16;                         // the fragments' edge
constexpr int kBlock = kTcWarps * kFrag;          // rows of a block / of a tile: 64
constexpr int kHalfBlock = kBlock / 2;            // columns of a tile per lane of a pair
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The WMMA element type of a dtype (same bits).
template <typename scalar_t>
struct TcType;
template <>
struct TcType<c10::Half> {
  using type = __half;
};
template <>
struct TcType<c10::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename scalar_t>
using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, typename TcType<scalar_t>::type, wmma::row_major>;
template <typename scalar_t>
using FragB = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, typename TcType<scalar_t>::type, wmma::row_major>;
template <typename scalar_t>  // B read transposed: element (k, n) at p[n * ldm + k]
using FragBt = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, typename TcType<scalar_t>::type, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;

// Shared-memory tiles, row-major with padded leading dimensions (fewer bank conflicts; still
// multiples of 16 bytes, and every 16-row / 16-column fragment origin 32-byte aligned):
//   H: kBlock x kD of scalar_t (q, k, v, grad_out), T: kBlock x kBlock of scalar_t (weights),
//   F: kBlock x kBlock of float (scores), O: kBlock x kD of float (the forward's output),
//   R: kBlock floats (per-row values).
constexpr size_t round_up(size_t n) { return (n + 127) / 128 * 128; }
template <typename scalar_t, int kD>
struct Tiles {
  static constexpr int kLdH = kD + 8, kLdT = kBlock + 8, kLdF = kBlock + 4, kLdO = kD + 4;
  static constexpr size_t H = round_up(sizeof(scalar_t) * kBlock * kLdH);
  static constexpr size_t T = round_up(sizeof(scalar_t) * kBlock * kLdT);
  static constexpr size_t F = round_up(sizeof(float) * kBlock * kLdF);
  static constexpr size_t O = round_up(sizeof(float) * kBlock * kLdO);
  static constexpr size_t R = round_up(sizeof(float) * kBlock);
  static constexpr size_t kForward = 3 * H + T + F + O + R;
  static constexpr size_t kGradQ = 4 * H + 2 * F + T;
  static constexpr size_t kGradKV = 4 * H + 2 * F + 2 * T + 2 * R;
};

// The next `bytes` of the dynamic shared memory, as T.
template <typename T>
__device__ __forceinline__ T* take(unsigned char*& p, size_t bytes) {
  T* r = reinterpret_cast<T*>(p);
  p += bytes;
  return r;
}

template <typename scalar_t>
__device__ __forceinline__ const typename TcType<scalar_t>::type* tc(const scalar_t* p) {
  return reinterpret_cast<const typename TcType<scalar_t>::type*>(p);
}

// dst[r][c] = src[(r0 + r) * cols + c] for r < kBlock, c < kD (leading dimension kD + 8); 0
// outside the (rows x cols) matrix. The whole block takes part (no barrier inside).
template <int kD, typename scalar_t>
__device__ __forceinline__ void load_block(scalar_t* dst, const scalar_t* src, int64_t rows, int64_t cols, int64_t r0,
                                           bool vec) {
  constexpr int kLd = kD + 8;
  constexpr int kVec = 16 / sizeof(scalar_t);
  if (vec) {  // cols % kVec == 0 and src 16-byte aligned: a pack is wholly inside or outside
    constexpr int kPacks = kD / kVec;
    for (int idx = threadIdx.x; idx < kBlock * kPacks; idx += kTcThreads) {
      const int r = idx / kPacks, c = (idx % kPacks) * kVec;
      const int64_t gr = r0 + r;
      Pack<scalar_t, kVec> p;
      if (gr < rows && c < cols) {
        p = *reinterpret_cast<const Pack<scalar_t, kVec>*>(src + gr * cols + c);
      } else {
#pragma unroll
        for (int u = 0; u < kVec; ++u) p.v[u] = scalar_t(0.0f);
      }
      *reinterpret_cast<Pack<scalar_t, kVec>*>(dst + r * kLd + c) = p;
    }
  } else {
    for (int idx = threadIdx.x; idx < kBlock * kD; idx += kTcThreads) {
      const int r = idx / kD, c = idx % kD;
      const int64_t gr = r0 + r;
      dst[r * kLd + c] = (gr < rows && c < cols) ? src[gr * cols + c] : scalar_t(0.0f);
    }
  }
}

// acc (16 x 16) = sum over ksteps of A[16 x 16k] B[16k x 16]: A row-major at a (leading
// dimension lda), B at b, read as FragB (row-major, b[k * ldb + n]) or FragBt (transposed,
// b[n * ldb + k]); the k-th step starts at column 16k of A and row 16k of B.
template <typename scalar_t, typename FragBType, int kMaxSteps>
__device__ __forceinline__ void product(FragC& acc, const scalar_t* a, int lda, const scalar_t* b, int ldb,
                                        int ksteps) {
  constexpr bool kTransB = std::is_same_v<FragBType, FragBt<scalar_t>>;
  FragA<scalar_t> fa;
  FragBType fb;
#pragma unroll
  for (int kk = 0; kk < kMaxSteps; ++kk) {
    if (kk < ksteps) {
      wmma::load_matrix_sync(fa, tc(a + kk * kFrag), lda);
      wmma::load_matrix_sync(fb, tc(kTransB ? b + kk * kFrag : b + kk * kFrag * ldb), ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
  }
}

// The pair reductions of the two lanes that own a row (both end with the same bits).
__device__ __forceinline__ float pair_max(float v) { return nan_max(v, __shfl_xor_sync(kFull, v, 1)); }
__device__ __forceinline__ float pair_sum(float v) { return v + __shfl_xor_sync(kFull, v, 1); }

// The 16 x kD fragment accumulators of a warp (rows wr.. of the block, columns 16f..) written
// to out rows [o0 + wr, o0 + wr + 16) of a (rows x cols) matrix, times `mul`, staged 16 x 16 at
// a time through the warp's strip of the float tile `stage` (leading dimension ld).
template <int kN, typename scalar_t>
__device__ __forceinline__ void write_strip(const FragC (&acc)[kN], int n, float* stage, int ld, scalar_t* out,
                                            int64_t o0, int64_t rows, int64_t cols, float mul, int lane) {
#pragma unroll
  for (int f = 0; f < kN; ++f) {
    if (f < n) {
      wmma::store_matrix_sync(stage, acc[f], ld, wmma::mem_row_major);
      __syncwarp();
      for (int idx = lane; idx < kFrag * kFrag; idx += kWarpSize) {
        const int r = idx / kFrag, c = idx % kFrag;
        const int64_t gr = o0 + r, gc = int64_t(f) * kFrag + c;
        if (gr < rows && gc < cols) out[gr * cols + gc] = static_cast<scalar_t>(mul * stage[r * ld + c]);
      }
      __syncwarp();
    }
  }
}

// ------------------------------------------------------------------------------ forward
template <typename scalar_t, int kD>
__global__ void __launch_bounds__(kTcThreads) tc_forward_kernel(const Args<scalar_t> a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using Tl = Tiles<scalar_t, kD>;
  constexpr int kLdH = Tl::kLdH, kLdT = Tl::kLdT, kLdF = Tl::kLdF, kLdO = Tl::kLdO;
  constexpr int kSteps = kD / kFrag;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  unsigned char* sp = tc_smem;
  scalar_t* q_s = take<scalar_t>(sp, Tl::H);
  scalar_t* k_s = take<scalar_t>(sp, Tl::H);
  scalar_t* v_s = take<scalar_t>(sp, Tl::H);
  scalar_t* p_s = take<scalar_t>(sp, Tl::T);
  float* s_s = take<float>(sp, Tl::F);
  float* o_s = take<float>(sp, Tl::O);
  float* inv_s = take<float>(sp, Tl::R);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int wr = warp * kFrag;                      // the warp's first row
  const int rr = wr + lane / 2, half = lane % 2;    // the lane's row, its columns half + 2c
  const int nE = static_cast<int>(ceil_div(a.E, kFrag)), nV = static_cast<int>(ceil_div(a.Ev, kFrag));
  const int64_t blocks = a.B * a.H * ceil_div(a.L, kBlock);
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const QueryBlock qb = query_block(a, blk, kBlock);
    const int64_t bh = qb.bh, b = qb.b, h = qb.h, i0 = qb.i0, kv = qb.kv, i = i0 + rr;
    const bool row_ok = i < a.L;
    const int64_t row = bh * a.L + i;
    const scalar_t* k = a.k + kv * a.S * a.E;
    const scalar_t* v = a.v + kv * a.S * a.Ev;
    // Keys any row of the block sees: causal rows i < i0 + kBlock see j <= i.
    const int64_t s_end = a.causal ? std::min(a.S, std::min(a.L, i0 + kBlock)) : a.S;
    __syncthreads();  // the previous block's readers of q_s are done
    load_block<kD>(q_s, a.q + bh * a.L * a.E, a.L, a.E, i0, a.vec_qk);
    for (int e = half; e < kD; e += 2) o_s[rr * kLdO + e] = 0.0f;
    math::MaxSum<float> run = math::MaxSum<float>::empty();
    for (int64_t j0 = 0; j0 < s_end; j0 += kBlock) {
      __syncthreads();  // the previous tile's readers are done
      load_block<kD>(k_s, k, a.S, a.E, j0, a.vec_qk);
      load_block<kD>(v_s, v, a.S, a.Ev, j0, a.vec_v);
      __syncthreads();
      // The warp's scores: S[wr.., n..] = Q K^T.
#pragma unroll
      for (int n = 0; n < kBlock / kFrag; ++n) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        product<scalar_t, FragBt<scalar_t>, kSteps>(acc, q_s + wr * kLdH, kLdH, k_s + n * kFrag * kLdH, kLdH, nE);
        wmma::store_matrix_sync(s_s + wr * kLdF + n * kFrag, acc, kLdF, wmma::mem_row_major);
      }
      __syncwarp();
      // The lane pair's row: scale, mask, causal; weights.
      float p[kHalfBlock];
      float mx = kNegInf;
#pragma unroll
      for (int c = 0; c < kHalfBlock; ++c) {
        const int col = 2 * c + half;
        const int64_t j = j0 + col;
        float s = kNegInf;
        if (row_ok && j < a.S && !(a.causal && j > i)) s = score(a, s_s[rr * kLdF + col], b, h, i, j);
        p[c] = s;
        mx = nan_max(mx, s);
      }
      // Merge the tile into the row's (max, sum), relative to the new max m (the tile: (m,
      // sum_j exp(s_j - m))); nothing while every score so far is -inf.
      float alpha = 1.0f;
      const float m = nan_max(run.max, pair_max(mx));
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kHalfBlock; ++c) {
        p[c] = m != kNegInf ? static_cast<float>(::exp(p[c] - m)) : 0.0f;  // 0 for a masked score
        sum += p[c];
      }
      sum = pair_sum(sum);
      if (m != kNegInf) {
        alpha = ::exp(run.max - m);  // 0 while the row was empty
        run = math::online_merge(run, math::MaxSum<float>{m, sum});
      }
#pragma unroll
      for (int c = 0; c < kHalfBlock; ++c) {
        const int col = 2 * c + half;
        const float w = p[c] != 0.0f ? p[c] * dropout_factor(a, row, j0 + col) : 0.0f;
        p_s[rr * kLdT + col] = static_cast<scalar_t>(w);
      }
      if (alpha != 1.0f)
        for (int e = half; e < nV * kFrag; e += 2) o_s[rr * kLdO + e] *= alpha;
      __syncwarp();
      // O[wr.., f..] += P V.
#pragma unroll
      for (int f = 0; f < kSteps; ++f) {
        if (f < nV) {
          FragC acc;
          wmma::load_matrix_sync(acc, o_s + wr * kLdO + f * kFrag, kLdO, wmma::mem_row_major);
          product<scalar_t, FragB<scalar_t>, kBlock / kFrag>(acc, p_s + wr * kLdT, kLdT, v_s + f * kFrag, kLdH,
                                                              kBlock / kFrag);
          wmma::store_matrix_sync(o_s + wr * kLdO + f * kFrag, acc, kLdO, wmma::mem_row_major);
        }
      }
      __syncwarp();
    }
    const bool empty = run.max == kNegInf;  // attends to nothing: out 0, lse -inf
    if (half == 0) {
      inv_s[rr] = empty ? 0.0f : 1.0f / run.sum;
      if (row_ok) a.lse[row] = empty ? kNegInf : run.max + static_cast<float>(::log(run.sum));
    }
    __syncwarp();
    // The warp's 16 rows, written by the whole warp along the rows (coalesced).
    for (int idx = lane; idx < kFrag * a.Ev; idx += kWarpSize) {
      const int r = idx / static_cast<int>(a.Ev), e = idx % static_cast<int>(a.Ev);
      const int64_t ii = i0 + wr + r;
      if (ii < a.L) a.out[(bh * a.L + ii) * a.Ev + e] = static_cast<scalar_t>(o_s[(wr + r) * kLdO + e] * inv_s[wr + r]);
    }
  }
#endif
}

// ----------------------------------------------------------------------------- backward
// The two score-sized products of a backward tile for the warp's 16 rows, in float:
// s = A B^T and dp = C D^T (kBlock columns each; A, B over nA fragments of the head
// dimension, C, D over nC). grad_q: S = Q K^T, dP = dO V^T; grad_kv: S^T = K Q^T, dP^T = V dO^T.
template <typename scalar_t, int kD>
__device__ __forceinline__ void score_products(const scalar_t* A, const scalar_t* B, int nA, const scalar_t* C,
                                               const scalar_t* D, int nC, float* s, float* dp) {
  using Tl = Tiles<scalar_t, kD>;
  constexpr int kLdH = Tl::kLdH, kLdF = Tl::kLdF, kSteps = kD / kFrag;
#pragma unroll
  for (int n = 0; n < kBlock / kFrag; ++n) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
    product<scalar_t, FragBt<scalar_t>, kSteps>(acc, A, kLdH, B + n * kFrag * kLdH, kLdH, nA);
    wmma::store_matrix_sync(s + n * kFrag, acc, kLdF, wmma::mem_row_major);
    wmma::fill_fragment(acc, 0.0f);
    product<scalar_t, FragBt<scalar_t>, kSteps>(acc, C, kLdH, D + n * kFrag * kLdH, kLdH, nC);
    wmma::store_matrix_sync(dp + n * kFrag, acc, kLdF, wmma::mem_row_major);
  }
}

// Per query block, looping over key tiles: S = Q K^T and dP = dO V^T (float), then
//   kDelta = true: delta[row] = D_i = sum_j P_ij dP_ij z_ij (z: the dropout factor), which is
//     dot(grad_out_i, O_i) with O in float: neither the output rounded to the dtype nor P
//     rounded for a P V product enters it, so dp - D does not cancel into rounding noise;
//   kDelta = false: grad_q (dS K, times the scale) and grad_mask (dS), dS = P (dP z - D).
template <typename scalar_t, int kD, bool kDelta>
__global__ void __launch_bounds__(kTcThreads) tc_grad_q_kernel(const Args<scalar_t> a, float* delta) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using Tl = Tiles<scalar_t, kD>;
  constexpr int kLdH = Tl::kLdH, kLdT = Tl::kLdT, kLdF = Tl::kLdF;
  constexpr int kSteps = kD / kFrag;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  unsigned char* sp = tc_smem;
  scalar_t* q_s = take<scalar_t>(sp, Tl::H);
  scalar_t* g_s = take<scalar_t>(sp, Tl::H);  // grad_out rows
  scalar_t* k_s = take<scalar_t>(sp, Tl::H);
  scalar_t* v_s = take<scalar_t>(sp, Tl::H);
  float* s_s = take<float>(sp, Tl::F);
  float* dp_s = take<float>(sp, Tl::F);
  scalar_t* ds_s = take<scalar_t>(sp, Tl::T);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int wr = warp * kFrag;
  const int rr = wr + lane / 2, half = lane % 2;
  const int nE = static_cast<int>(ceil_div(a.E, kFrag)), nV = static_cast<int>(ceil_div(a.Ev, kFrag));
  const int64_t blocks = a.B * a.H * ceil_div(a.L, kBlock);
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const QueryBlock qb = query_block(a, blk, kBlock);
    const int64_t bh = qb.bh, b = qb.b, h = qb.h, i0 = qb.i0, kv = qb.kv, i = i0 + rr;
    const bool row_ok = i < a.L;
    const int64_t row = bh * a.L + i;
    const scalar_t* k = a.k + kv * a.S * a.E;
    const scalar_t* v = a.v + kv * a.S * a.Ev;
    const float lse = row_ok ? a.lse_in[row] : kNegInf;
    const float D = !kDelta && row_ok ? a.delta[row] : 0.0f;
    float d_sum = 0.0f;  // kDelta: the lane's part of D
    const int64_t s_end = a.causal ? std::min(a.S, std::min(a.L, i0 + kBlock)) : a.S;
    __syncthreads();
    load_block<kD>(q_s, a.q + bh * a.L * a.E, a.L, a.E, i0, a.vec_qk);
    load_block<kD>(g_s, a.grad_out + bh * a.L * a.Ev, a.L, a.Ev, i0, a.vec_v);
    FragC dq[kSteps];
#pragma unroll
    for (int f = 0; f < kSteps; ++f) wmma::fill_fragment(dq[f], 0.0f);
    for (int64_t j0 = 0; j0 < s_end; j0 += kBlock) {
      __syncthreads();
      load_block<kD>(k_s, k, a.S, a.E, j0, a.vec_qk);
      load_block<kD>(v_s, v, a.S, a.Ev, j0, a.vec_v);
      __syncthreads();
      // S = Q K^T and dP = dO V^T for the warp's rows.
      score_products<scalar_t, kD>(q_s + wr * kLdH, k_s, nE, g_s + wr * kLdH, v_s, nV, s_s + wr * kLdF,
                                   dp_s + wr * kLdF);
      __syncwarp();
#pragma unroll 4
      for (int c = 0; c < kHalfBlock; ++c) {
        const int col = 2 * c + half;
        const int64_t j = j0 + col;
        float ds = 0.0f;
        if (row_ok && j < a.S && !(a.causal && j > i)) {
          const float p = math::prob_from_lse(score(a, s_s[rr * kLdF + col], b, h, i, j), lse);
          const float dp = dp_s[rr * kLdF + col] * dropout_factor(a, row, j);
          if constexpr (kDelta) {
            d_sum += p * dp;
          } else {
            ds = math::score_grad(p, dp, D);
          }
        }
        if constexpr (!kDelta) {
          ds_s[rr * kLdT + col] = static_cast<scalar_t>(ds);
          if (a.grad_mask != nullptr && row_ok && j < a.S) a.grad_mask[row * a.S + j] = ds;
        }
      }
      __syncwarp();
      if (!kDelta && a.grad_q != nullptr) {
#pragma unroll
        for (int f = 0; f < kSteps; ++f)
          if (f < nE)
            product<scalar_t, FragB<scalar_t>, kBlock / kFrag>(dq[f], ds_s + wr * kLdT, kLdT, k_s + f * kFrag, kLdH,
                                                                kBlock / kFrag);
      }
    }
    if constexpr (kDelta) {
      d_sum = pair_sum(d_sum);
      if (row_ok && half == 0) delta[row] = d_sum;
      continue;
    }
    // Causal: the keys past the block's last tile get no gradient.
    if (a.grad_mask != nullptr && row_ok)
      for (int64_t jj = ceil_div(s_end, kBlock) * kBlock + half; jj < a.S; jj += 2) a.grad_mask[row * a.S + jj] = 0.0f;
    if (a.grad_q != nullptr)
      write_strip(dq, nE, s_s + wr * kLdF, kLdF, a.grad_q + bh * a.L * a.E, i0 + wr, a.L, a.E, a.scale, lane);
  }
#endif
}

// grad_k (dS^T Q, times the scale) and grad_v (P^T dO, dropout applied): per key block of one
// (b, kv head), looping over the query tiles of every query head of the group.
template <typename scalar_t, int kD>
__global__ void __launch_bounds__(kTcThreads) tc_grad_kv_kernel(const Args<scalar_t> a) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  using Tl = Tiles<scalar_t, kD>;
  constexpr int kLdH = Tl::kLdH, kLdT = Tl::kLdT, kLdF = Tl::kLdF;
  constexpr int kSteps = kD / kFrag;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  unsigned char* sp = tc_smem;
  scalar_t* k_s = take<scalar_t>(sp, Tl::H);
  scalar_t* v_s = take<scalar_t>(sp, Tl::H);
  scalar_t* q_s = take<scalar_t>(sp, Tl::H);
  scalar_t* g_s = take<scalar_t>(sp, Tl::H);  // grad_out rows
  float* st_s = take<float>(sp, Tl::F);       // S^T: [key][query]
  float* dpt_s = take<float>(sp, Tl::F);      // dP^T
  scalar_t* pt_s = take<scalar_t>(sp, Tl::T);  // P^T after dropout
  scalar_t* dst_s = take<scalar_t>(sp, Tl::T);  // dS^T
  float* lse_s = take<float>(sp, Tl::R);
  float* d_s = take<float>(sp, Tl::R);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int wr = warp * kFrag;
  const int rr = wr + lane / 2, half = lane % 2;  // the lane's key row, its query columns
  const int nE = static_cast<int>(ceil_div(a.E, kFrag)), nV = static_cast<int>(ceil_div(a.Ev, kFrag));
  const bool want_k = a.grad_k != nullptr, want_v = a.grad_v != nullptr;
  const int64_t group = divmod(a.H, a.Hk).q;
  const int64_t col_blocks = ceil_div(a.S, kBlock);
  const int64_t blocks = a.B * a.Hk * col_blocks;
  for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const DivMod blk_kv = divmod(blk, col_blocks), kv_b = divmod(blk_kv.q, a.Hk);
    const int64_t kv = blk_kv.q, b = kv_b.q, hk = kv_b.r;
    const int64_t j0 = blk_kv.r * kBlock, j = j0 + rr;
    const bool key_ok = j < a.S;
    __syncthreads();
    load_block<kD>(k_s, a.k + kv * a.S * a.E, a.S, a.E, j0, a.vec_qk);
    load_block<kD>(v_s, a.v + kv * a.S * a.Ev, a.S, a.Ev, j0, a.vec_v);
    FragC dk[kSteps], dv[kSteps];
#pragma unroll
    for (int f = 0; f < kSteps; ++f) {
      wmma::fill_fragment(dk[f], 0.0f);
      wmma::fill_fragment(dv[f], 0.0f);
    }
    // Causal: queries i < j0 see none of the block's keys.
    const int64_t i_begin = a.causal ? j0 : 0;
    for (int64_t g = 0; g < group; ++g) {
      const int64_t h = hk * group + g, bh = b * a.H + h;
      for (int64_t i0 = i_begin; i0 < a.L; i0 += kBlock) {
        __syncthreads();  // the previous readers of q_s, g_s, lse_s, d_s are done
        load_block<kD>(q_s, a.q + bh * a.L * a.E, a.L, a.E, i0, a.vec_qk);
        load_block<kD>(g_s, a.grad_out + bh * a.L * a.Ev, a.L, a.Ev, i0, a.vec_v);
        for (int r = threadIdx.x; r < kBlock; r += kTcThreads) {
          const bool ok = i0 + r < a.L;
          lse_s[r] = ok ? a.lse_in[bh * a.L + i0 + r] : kNegInf;
          d_s[r] = ok ? a.delta[bh * a.L + i0 + r] : 0.0f;
        }
        __syncthreads();
        // S^T = K Q^T and dP^T = V dO^T for the warp's keys.
        score_products<scalar_t, kD>(k_s + wr * kLdH, q_s, nE, v_s + wr * kLdH, g_s, nV, st_s + wr * kLdF,
                                     dpt_s + wr * kLdF);
        __syncwarp();
#pragma unroll 4
        for (int c = 0; c < kHalfBlock; ++c) {
          const int col = 2 * c + half;
          const int64_t i = i0 + col;
          float pd = 0.0f, ds = 0.0f;  // dropped probability (for grad_v), score gradient
          if (key_ok && i < a.L && !(a.causal && j > i)) {
            const int64_t row = bh * a.L + i;
            const float p = math::prob_from_lse(score(a, st_s[rr * kLdF + col], b, h, i, j), lse_s[col]);
            const float f = dropout_factor(a, row, j);
            pd = p * f;
            ds = math::score_grad(p, dpt_s[rr * kLdF + col] * f, d_s[col]);
          }
          pt_s[rr * kLdT + col] = static_cast<scalar_t>(pd);
          dst_s[rr * kLdT + col] = static_cast<scalar_t>(ds);
        }
        __syncwarp();
#pragma unroll
        for (int f = 0; f < kSteps; ++f) {
          if (want_v && f < nV)
            product<scalar_t, FragB<scalar_t>, kBlock / kFrag>(dv[f], pt_s + wr * kLdT, kLdT, g_s + f * kFrag, kLdH,
                                                                kBlock / kFrag);
          if (want_k && f < nE)
            product<scalar_t, FragB<scalar_t>, kBlock / kFrag>(dk[f], dst_s + wr * kLdT, kLdT, q_s + f * kFrag, kLdH,
                                                                kBlock / kFrag);
        }
      }
    }
    if (want_k) write_strip(dk, nE, st_s + wr * kLdF, kLdF, a.grad_k + kv * a.S * a.E, j0 + wr, a.S, a.E, a.scale, lane);
    if (want_v) write_strip(dv, nV, st_s + wr * kLdF, kLdF, a.grad_v + kv * a.S * a.Ev, j0 + wr, a.S, a.Ev, 1.0f, lane);
  }
#endif
}

// ------------------------------------------------------------------------------ launchers
// Whether the tensor-core kernels take a problem of this shape (the dtype and the device
// are checked by the callers).
bool tc_shape(const Problem& job) {
  return job.E > 0 && job.Ev > 0 && job.E % 8 == 0 && job.Ev % 8 == 0 && std::max(job.E, job.Ev) <= 128;
}

// Calls f with kD (std::integral_constant): the smallest of 32, 64, 128 that holds max(E, Ev).
template <typename F>
void with_tc_dim(int64_t E, int64_t Ev, F&& f) {
  const int64_t d = std::max(E, Ev);
  if (d <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (d <= 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    f(std::integral_constant<int, 128>{});
  }
}

// Launches `kernel` with `bytes` of dynamic shared memory (its limit raised to that).
template <typename... KA, typename... A>
void launch_tc(void (*kernel)(KA...), int64_t blocks, size_t bytes, cudaStream_t stream, A... args) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  kernel<<<grid_for(blocks), kTcThreads, bytes, stream>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The device can run the kernels of kD: compute capability 8.0 or newer, and the largest
// kernel's tiles within its opt-in shared memory per block.
template <typename scalar_t, int kD>
bool tc_device(const cudaDeviceProp& prop) {
  using Tl = Tiles<scalar_t, kD>;
  const size_t need = std::max({Tl::kForward, Tl::kGradQ, Tl::kGradKV});
  return prop.major >= 8 && static_cast<size_t>(prop.sharedMemPerBlockOptin) >= need;
}

template <typename scalar_t>
bool forward_tc(const Forward& job) {
  bool done = false;
  with_tc_dim(job.E, job.Ev, [&](auto dim) {
    constexpr int kD = decltype(dim)::value;
    if (!tc_device<scalar_t, kD>(*at::cuda::getDeviceProperties(job.device_index))) return;
    const Args<scalar_t> a = forward_args<scalar_t>(job);
    launch_tc(&tc_forward_kernel<scalar_t, kD>, job.B * job.H * ceil_div(job.L, kBlock), Tiles<scalar_t, kD>::kForward,
              at::cuda::getCurrentCUDAStream(), a);
    done = true;
  });
  return done;
}

template <typename scalar_t>
bool backward_tc(const Backward& job) {
  bool done = false;
  with_tc_dim(job.E, job.Ev, [&](auto dim) {
    constexpr int kD = decltype(dim)::value;
    using Tl = Tiles<scalar_t, kD>;
    if (!tc_device<scalar_t, kD>(*at::cuda::getDeviceProperties(job.device_index))) return;
    const auto stream = at::cuda::getCurrentCUDAStream();
    Args<scalar_t> a = backward_args<scalar_t>(job);
    const int64_t rows = job.B * job.H * job.L;
    const bool want_q = job.grad_q != nullptr || job.grad_mask != nullptr;
    const bool want_kv = (job.grad_k != nullptr || job.grad_v != nullptr) && job.B * job.Hk * job.S > 0;
    // D_i = dot(grad_out_i, O_i) in float (tc_grad_q_kernel<kDelta>), read by both gradient kernels.
    at::Tensor delta;
    if (rows > 0) {
      delta = at::empty({rows}, at::TensorOptions()
                                    .dtype(at::kFloat)
                                    .device(c10::Device(c10::DeviceType::CUDA, job.device_index)));
      a.delta = delta.data_ptr<float>();
      launch_tc(&tc_grad_q_kernel<scalar_t, kD, true>, job.B * job.H * ceil_div(job.L, kBlock), Tl::kGradQ, stream, a,
                delta.data_ptr<float>());
    }
    if (rows > 0 && want_q)
      launch_tc(&tc_grad_q_kernel<scalar_t, kD, false>, job.B * job.H * ceil_div(job.L, kBlock), Tl::kGradQ, stream,
                a, static_cast<float*>(nullptr));
    if (want_kv)
      launch_tc(&tc_grad_kv_kernel<scalar_t, kD>, job.B * job.Hk * ceil_div(job.S, kBlock), Tl::kGradKV, stream, a);
    done = true;
  });
  return done;
}

}  // namespace

bool forward_tensor_core(const Forward& job) {
  if (!tc_shape(job)) return false;
  if (job.dtype == at::kHalf) return forward_tc<c10::Half>(job);
  if (job.dtype == at::kBFloat16) return forward_tc<c10::BFloat16>(job);
  return false;
}

bool backward_tensor_core(const Backward& job) {
  if (!tc_shape(job)) return false;
  if (job.dtype == at::kHalf) return backward_tc<c10::Half>(job);
  if (job.dtype == at::kBFloat16) return backward_tc<c10::BFloat16>(job);
  return false;
}

}  // namespace torch_ops::attention
