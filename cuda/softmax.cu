// The softmax family on CUDA: the registrations, and two kernels with one block per row
// (grid-stride over rows): each thread keeps an online (max, sum) over its strided columns
// (torch_ops/softmax_math.h, shared with the CPU kernels), warps merge with shuffles and the
// block through shared memory, then the row is written in one more pass. Indices are 64-bit;
// float16 / bfloat16 are computed in float. Targets are checked by the host code before any
// launch (csrc/softmax.cpp), so no kernel asserts.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "torch_ops/softmax.h"
#include "torch_ops/softmax_math.h"

namespace torch_ops::softmax {
namespace {

constexpr int kMaxThreads = 256;
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
__device__ math::MaxSum<T> warp_merge(math::MaxSum<T> a) {
  for (int off = 16; off > 0; off /= 2) {
    math::MaxSum<T> b{__shfl_xor_sync(kFull, a.max, off), __shfl_xor_sync(kFull, a.sum, off)};
    a = math::online_merge(a, b);
  }
  return a;
}

template <typename T>
__device__ T warp_sum(T v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// The block's merged (max, sum), on every thread. blockDim.x is a multiple of 32.
template <typename T>
__device__ math::MaxSum<T> block_merge(math::MaxSum<T> a) {
  __shared__ T smax[32], ssum[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  a = warp_merge(a);
  __syncthreads();  // the shared arrays may still be read by a previous reduction
  if (lane == 0) {
    smax[warp] = a.max;
    ssum[warp] = a.sum;
  }
  __syncthreads();
  math::MaxSum<T> r = math::MaxSum<T>::empty();
  for (int w = 0; w < warps; ++w) r = math::online_merge(r, math::MaxSum<T>{smax[w], ssum[w]});
  return r;
}

template <typename T>
__device__ T block_sum(T v) {
  __shared__ T s[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) s[warp] = v;
  __syncthreads();
  T r = 0;
  for (int w = 0; w < warps; ++w) r += s[w];
  return r;
}

template <typename scalar_t, typename acc_t>
__device__ math::MaxSum<acc_t> row_max_sum(const scalar_t* x, int64_t n) {
  math::MaxSum<acc_t> a = math::MaxSum<acc_t>::empty();
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) math::online_update(a, static_cast<acc_t>(x[c]));
  return block_merge(a);
}

template <typename scalar_t>
__global__ void rows_kernel(RowOp op, int64_t rows, int64_t cols, scalar_t* out, const scalar_t* a,
                            const scalar_t* b) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const scalar_t* x = a + r * cols;
    const scalar_t* o = b ? b + r * cols : nullptr;
    scalar_t* y = out + r * cols;
    if (op == RowOp::Softmax || op == RowOp::LogSoftmax) {
      const auto lse = math::lse_of(row_max_sum<scalar_t, acc_t>(x, cols));
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const acc_t v = math::minus_lse(static_cast<acc_t>(x[c]), lse);
        y[c] = static_cast<scalar_t>(op == RowOp::Softmax ? ::exp(v) : v);
      }
    } else if (op == RowOp::SoftmaxBackward) {
      acc_t dot = 0;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dot += static_cast<acc_t>(x[c]) * static_cast<acc_t>(o[c]);
      dot = block_sum(dot);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        y[c] = static_cast<scalar_t>(static_cast<acc_t>(o[c]) * (static_cast<acc_t>(x[c]) - dot));
    } else {
      acc_t s = 0;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += static_cast<acc_t>(x[c]);
      s = block_sum(s);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        y[c] = static_cast<scalar_t>(static_cast<acc_t>(x[c]) - ::exp(static_cast<acc_t>(o[c])) * s);
    }
    __syncthreads();  // the next row reuses the shared reduction arrays
  }
}

template <typename scalar_t>
struct CeArgs {
  using acc_t = at::opmath_type<scalar_t>;
  bool forward;
  int64_t rows, classes;
  const scalar_t* logits;
  const int64_t* target;
  const scalar_t* target_prob;
  const scalar_t* weight;
  int64_t ignore_index;
  acc_t eps;
  acc_t* row_max;
  acc_t* log_sum;
  acc_t* loss;
  acc_t* row_weight;
  const acc_t* scale;
  scalar_t* grad;  // may equal logits (in place)
};

template <typename scalar_t>
__global__ void cross_entropy_kernel(CeArgs<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t C = p.classes;
  const acc_t eps = p.eps;
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const scalar_t* x = p.logits + r * C;
    scalar_t* g = p.grad ? p.grad + r * C : nullptr;
    const acc_t sc = p.scale ? p.scale[r] : acc_t(1);
    math::Lse<acc_t> lse;
    if (p.forward) {
      lse = math::lse_of(row_max_sum<scalar_t, acc_t>(x, C));
      if (threadIdx.x == 0) {
        p.row_max[r] = lse.max;
        p.log_sum[r] = lse.log_sum;
      }
    } else {
      lse = {p.row_max[r], p.log_sum[r]};
    }
    const auto xl = [&](int64_t c) { return math::minus_lse(static_cast<acc_t>(x[c]), lse); };  // x_c - lse
    const auto w = [&](int64_t c) { return p.weight ? static_cast<acc_t>(p.weight[c]) : acc_t(1); };
    if (p.target) {
      const int64_t t = p.target[r];
      if (t == p.ignore_index) {
        if (p.forward && threadIdx.x == 0) p.loss[r] = p.row_weight[r] = 0;
        if (g)
          for (int64_t c = threadIdx.x; c < C; c += blockDim.x) g[c] = scalar_t(0);
      } else {
        const acc_t w_t = w(t), x_t = static_cast<acc_t>(x[t]);
        acc_t weight_sum = static_cast<acc_t>(C);
        if (eps > 0 && p.weight) {
          acc_t s = 0;
          for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += w(c);
          weight_sum = block_sum(s);
        }
        if (p.forward) {
          acc_t smooth = 0;
          if (eps > 0) {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) smooth += w(c) * xl(c);
            smooth = block_sum(smooth);
          }
          if (threadIdx.x == 0) {
            p.loss[r] = math::ce_index_loss(-math::minus_lse(x_t, lse), w_t, eps, smooth, C);
            p.row_weight[r] = w_t;
          }
        }
        if (g) {
          __syncthreads();  // every thread has read x[t] before it may be overwritten
          const acc_t a = math::ce_index_a(w_t, eps, weight_sum, C);
          for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            const acc_t prob = ::exp(xl(c));
            g[c] = static_cast<scalar_t>(math::ce_grad(sc, a, prob, math::ce_index_b(c == t, w_t, w(c), eps, C)));
          }
        }
      }
    } else {
      const scalar_t* q = p.target_prob + r * C;
      const auto wq = [&](int64_t c) { return w(c) * math::ce_smoothed(static_cast<acc_t>(q[c]), eps, C); };
      acc_t a = 0;
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) a += wq(c);
      a = block_sum(a);
      if (p.forward) {
        acc_t dot = 0;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += wq(c) * xl(c);
        dot = block_sum(dot);
        if (threadIdx.x == 0) {
          p.loss[r] = -dot;
          p.row_weight[r] = 1;
        }
      }
      if (g)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
          g[c] = static_cast<scalar_t>(math::ce_grad(sc, a, ::exp(xl(c)), wq(c)));
    }
    __syncthreads();
  }
}

int threads_for(int64_t cols) {
  int t = 32;
  while (t < kMaxThreads && t < cols) t *= 2;
  return t;
}

unsigned blocks_for(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, int64_t(1) << 20)); }

void rows_cuda(const Rows& job) {
  if (job.rows == 0 || job.cols == 0) return;
  const c10::cuda::CUDAGuard guard(job.device_index);
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.softmax", [&] {
    rows_kernel<scalar_t><<<blocks_for(job.rows), threads_for(job.cols), 0, stream>>>(
        job.op, job.rows, job.cols, static_cast<scalar_t*>(job.out), static_cast<const scalar_t*>(job.in[0]),
        static_cast<const scalar_t*>(job.in[1]));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void cross_entropy_cuda(const CrossEntropy& job) {
  if (job.rows == 0) return;
  const c10::cuda::CUDAGuard guard(job.device_index);
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.cross_entropy", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    CeArgs<scalar_t> p{job.pass == CePass::Forward,
                       job.rows,
                       job.classes,
                       static_cast<const scalar_t*>(job.logits),
                       job.target,
                       static_cast<const scalar_t*>(job.target_prob),
                       static_cast<const scalar_t*>(job.weight),
                       job.ignore_index,
                       static_cast<acc_t>(job.label_smoothing),
                       static_cast<acc_t*>(job.row_max),
                       static_cast<acc_t*>(job.log_sum),
                       static_cast<acc_t*>(job.loss),
                       static_cast<acc_t*>(job.row_weight),
                       static_cast<const acc_t*>(job.scale),
                       static_cast<scalar_t*>(job.grad)};
    cross_entropy_kernel<scalar_t><<<blocks_for(job.rows), threads_for(job.classes), 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CUDA) = Launchers{&rows_cuda, &cross_entropy_cuda};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) { register_kernels(m); }

}  // namespace torch_ops::softmax
