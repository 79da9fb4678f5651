// normalization on CUDA: the registrations and the kernels (the math: torch_ops/norm_math.h,
// shared with the CPU kernels).
//
// Forward: one block per row (grid-stride over rows). Each thread keeps Welford moments
// (layer_norm) or a sum of squares (rms_norm) of its elements, in the opmath type; the
// block combines them with warp shuffles and one shared-memory step (welford_combine).
// A second pass over the (L1/L2-resident) row writes y. 16-byte vector loads and stores
// when every pointer is aligned and N is a multiple of the vector width.
// Backward: grad_input one block per row (two block sums, then the row); weight / bias
// gradients in two stages with a fixed partition of the rows (norm::param_block_rows): a
// thread per column sums its block's rows in order into a partial row, then a thread per
// column adds the partial rows in block order. Deterministic, run to run.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "torch_ops/norm.h"
#include "torch_ops/norm_dispatch.h"
#include "torch_ops/norm_math.h"

namespace torch_ops::norm {
namespace {

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// The sum of v over the block, returned to every thread. shared: 32 slots.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[wid] = v;
  __syncthreads();
  v = (threadIdx.x < warps) ? shared[lane] : T(0);
  __syncthreads();
  if (wid == 0) {
    v = warp_sum(v);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const T r = shared[0];
  __syncthreads();
  return r;
}

template <typename T>
__device__ math::Moments<T> warp_moments(math::Moments<T> m) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    math::Moments<T> other{__shfl_down_sync(0xffffffffu, m.n, o), __shfl_down_sync(0xffffffffu, m.mean, o),
                           __shfl_down_sync(0xffffffffu, m.m2, o)};
    m = math::welford_combine(m, other);
  }
  return m;
}

// The combined moments of the block, returned to every thread. shared: 3 * 32 slots.
template <typename T>
__device__ math::Moments<T> block_moments(math::Moments<T> m, T* shared) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  m = warp_moments(m);
  if (lane == 0) {
    shared[wid] = m.n;
    shared[32 + wid] = m.mean;
    shared[64 + wid] = m.m2;
  }
  __syncthreads();
  m = threadIdx.x < warps ? math::Moments<T>{shared[lane], shared[32 + lane], shared[64 + lane]}
                          : math::Moments<T>{T(0), T(0), T(0)};
  __syncthreads();
  if (wid == 0) {
    m = warp_moments(m);
    if (lane == 0) {
      shared[0] = m.n;
      shared[32] = m.mean;
      shared[64] = m.m2;
    }
  }
  __syncthreads();
  const math::Moments<T> r{shared[0], shared[32], shared[64]};
  __syncthreads();
  return r;
}

template <int V, typename T>
__device__ __forceinline__ Pack<T, V> load(const T* p, int64_t j) {
  return *reinterpret_cast<const Pack<T, V>*>(p + j);
}
template <int V, typename T>
__device__ __forceinline__ void store(T* p, int64_t j, const Pack<T, V>& v) {
  *reinterpret_cast<Pack<T, V>*>(p + j) = v;
}

template <int V, typename scalar_t, typename param_t, bool Rms>
__global__ void forward_kernel(Forward job) {
  using opmath_t = at::opmath_type<scalar_t>;
  __shared__ opmath_t shared[96];
  const int64_t N = job.N;
  const auto* X = static_cast<const scalar_t*>(job.x);
  const auto* R = static_cast<const scalar_t*>(job.r);
  const auto* W = static_cast<const param_t*>(job.w);
  const auto* B = static_cast<const param_t*>(job.b);
  auto* Y = static_cast<scalar_t*>(job.y);
  auto* S = static_cast<scalar_t*>(job.sum);
  for (int64_t i = blockIdx.x; i < job.M; i += gridDim.x) {
    const scalar_t* src = X + i * N;
    math::Moments<opmath_t> mom{opmath_t(0), opmath_t(0), opmath_t(0)};
    opmath_t sq = 0;
    const auto take = [&](opmath_t v) {
      if constexpr (Rms) {
        sq += v * v;
      } else {
        mom = math::welford_push(mom, v);
      }
    };
    if (R) {
      const scalar_t* r = R + i * N;
      scalar_t* s = S + i * N;
      for (int64_t j = threadIdx.x * V; j < N; j += blockDim.x * V) {
        const auto a = load<V>(src, j), b = load<V>(r, j);
        Pack<scalar_t, V> o;
#pragma unroll
        for (int k = 0; k < V; ++k) {
          o.v[k] = static_cast<scalar_t>(static_cast<opmath_t>(a.v[k]) + static_cast<opmath_t>(b.v[k]));
          take(static_cast<opmath_t>(o.v[k]));
        }
        store<V>(s, j, o);
      }
      src = s;
    } else {
      for (int64_t j = threadIdx.x * V; j < N; j += blockDim.x * V) {
        const auto a = load<V>(src, j);
#pragma unroll
        for (int k = 0; k < V; ++k) take(static_cast<opmath_t>(a.v[k]));
      }
    }
    opmath_t mean = 0, var;
    if constexpr (Rms) {
      var = block_sum(sq, shared) / static_cast<opmath_t>(N);
    } else {
      const auto m = block_moments(mom, shared);
      mean = m.mean;
      var = m.m2 / static_cast<opmath_t>(N);
    }
    const opmath_t rstd = math::norm_rstd(var, static_cast<opmath_t>(job.eps));
    if (threadIdx.x == 0) {
      if constexpr (!Rms) static_cast<opmath_t*>(job.mean)[i] = mean;
      static_cast<opmath_t*>(job.rstd)[i] = rstd;
    }
    scalar_t* y = Y + i * N;
    for (int64_t j = threadIdx.x * V; j < N; j += blockDim.x * V) {
      const auto a = load<V>(src, j);
      Pack<scalar_t, V> o;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        opmath_t v = math::norm_xhat(static_cast<opmath_t>(a.v[k]), mean, rstd);
        if (W) v = v * static_cast<opmath_t>(W[j + k]);
        if (B) v = v + static_cast<opmath_t>(B[j + k]);
        o.v[k] = static_cast<scalar_t>(v);
      }
      store<V>(y, j, o);
    }
  }
}

template <int V, typename scalar_t, typename param_t>
__global__ void grad_input_kernel(Backward job) {
  using opmath_t = at::opmath_type<scalar_t>;
  __shared__ opmath_t shared[32];
  const int64_t N = job.N;
  const auto* DY = static_cast<const scalar_t*>(job.dy);
  const auto* X = static_cast<const scalar_t*>(job.x);
  const auto* W = static_cast<const param_t*>(job.w);
  const auto* EX = static_cast<const scalar_t*>(job.extra);
  auto* DX = static_cast<scalar_t*>(job.dx);
  const opmath_t inv_n = opmath_t(1) / static_cast<opmath_t>(N);
  for (int64_t i = blockIdx.x; i < job.M; i += gridDim.x) {
    const scalar_t* x = X + i * N;
    const scalar_t* dy = DY + i * N;
    const opmath_t mean = job.rms ? opmath_t(0) : static_cast<const opmath_t*>(job.mean)[i];
    const opmath_t rstd = static_cast<const opmath_t*>(job.rstd)[i];
    opmath_t sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x * V; j < N; j += blockDim.x * V) {
      const auto a = load<V>(x, j), d = load<V>(dy, j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        opmath_t g = static_cast<opmath_t>(d.v[k]);
        if (W) g = g * static_cast<opmath_t>(W[j + k]);
        sg += g;
        sgx += g * math::norm_xhat(static_cast<opmath_t>(a.v[k]), mean, rstd);
      }
    }
    const opmath_t c_g = job.rms ? opmath_t(0) : block_sum(sg, shared) * inv_n;
    const opmath_t c_gx = block_sum(sgx, shared) * inv_n;
    scalar_t* dx = DX + i * N;
    for (int64_t j = threadIdx.x * V; j < N; j += blockDim.x * V) {
      const auto a = load<V>(x, j), d = load<V>(dy, j);
      Pack<scalar_t, V> e;
      if (EX) e = load<V>(EX + i * N, j);
      Pack<scalar_t, V> o;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        opmath_t g = static_cast<opmath_t>(d.v[k]);
        if (W) g = g * static_cast<opmath_t>(W[j + k]);
        opmath_t v = math::norm_grad_input(g, math::norm_xhat(static_cast<opmath_t>(a.v[k]), mean, rstd), rstd, c_g,
                                           c_gx);
        if (EX) v = v + static_cast<opmath_t>(e.v[k]);
        o.v[k] = static_cast<scalar_t>(v);
      }
      store<V>(dx, j, o);
    }
  }
}

// partial[blk, j] = sum over the rows of block blk, in order, of dy * xhat (w) and dy (b).
template <typename scalar_t>
__global__ void param_partial_kernel(Backward job) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t N = job.N;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= N) return;
  const int64_t blk = blockIdx.y;
  const int64_t r0 = blk * job.block_rows, r1 = (r0 + job.block_rows < job.M) ? r0 + job.block_rows : job.M;
  const auto* DY = static_cast<const scalar_t*>(job.dy);
  const auto* X = static_cast<const scalar_t*>(job.x);
  opmath_t aw = 0, ab = 0;
  for (int64_t i = r0; i < r1; ++i) {
    const opmath_t mean = job.rms ? opmath_t(0) : static_cast<const opmath_t*>(job.mean)[i];
    const opmath_t rstd = static_cast<const opmath_t*>(job.rstd)[i];
    const opmath_t d = static_cast<opmath_t>(DY[i * N + j]);
    aw += d * math::norm_xhat(static_cast<opmath_t>(X[i * N + j]), mean, rstd);
    ab += d;
  }
  if (job.partial_w) static_cast<opmath_t*>(job.partial_w)[blk * N + j] = aw;
  if (job.partial_b) static_cast<opmath_t*>(job.partial_b)[blk * N + j] = ab;
}

template <typename opmath_t, typename param_t>
__global__ void param_reduce_kernel(const opmath_t* partial, param_t* out, int64_t blocks, int64_t N) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= N) return;
  opmath_t a = partial[j];
  for (int64_t k = 1; k < blocks; ++k) a += partial[k * N + j];
  out[j] = static_cast<param_t>(a);
}

int threads_for(int64_t n_chunks) {
  int t = 32;
  while (t < 1024 && t < n_chunks) t *= 2;
  return t;
}

int64_t grid_for(int64_t rows) {
  const int64_t max_blocks = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 32;
  return std::max<int64_t>(1, std::min(rows, max_blocks));
}

template <typename T>
bool aligned16(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename scalar_t, typename param_t>
void forward_typed(const Forward& job) {
  constexpr int kV = 16 / sizeof(scalar_t);
  const bool vec = job.N % kV == 0 && aligned16<scalar_t>(job.x) && aligned16<scalar_t>(job.r) &&
                   aligned16<scalar_t>(job.y) && aligned16<scalar_t>(job.sum);
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int threads = threads_for(vec ? job.N / kV : job.N);
  const auto grid = static_cast<unsigned>(grid_for(job.M));
  const auto go = [&](auto v) {
    constexpr int V = decltype(v)::value;
    if (job.rms) {
      forward_kernel<V, scalar_t, param_t, true><<<grid, threads, 0, stream>>>(job);
    } else {
      forward_kernel<V, scalar_t, param_t, false><<<grid, threads, 0, stream>>>(job);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (vec) {
    go(std::integral_constant<int, kV>{});
  } else {
    go(std::integral_constant<int, 1>{});
  }
}

template <typename scalar_t, typename param_t>
void backward_typed(const Backward& job) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (job.dx) {
    constexpr int kV = 16 / sizeof(scalar_t);
    const bool vec = job.N % kV == 0 && aligned16<scalar_t>(job.x) && aligned16<scalar_t>(job.dy) &&
                     aligned16<scalar_t>(job.dx) && aligned16<scalar_t>(job.extra);
    const int threads = threads_for(vec ? job.N / kV : job.N);
    const auto grid = static_cast<unsigned>(grid_for(job.M));
    if (vec) {
      grad_input_kernel<kV, scalar_t, param_t><<<grid, threads, 0, stream>>>(job);
    } else {
      grad_input_kernel<1, scalar_t, param_t><<<grid, threads, 0, stream>>>(job);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (job.partial_w || job.partial_b) {
    const int64_t blocks = (job.M + job.block_rows - 1) / job.block_rows;
    constexpr int kThreads = 256;
    const dim3 grid(static_cast<unsigned>((job.N + kThreads - 1) / kThreads), static_cast<unsigned>(blocks));
    param_partial_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(job);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto rgrid = static_cast<unsigned>((job.N + kThreads - 1) / kThreads);
    if (job.partial_w) {
      param_reduce_kernel<opmath_t, param_t><<<rgrid, kThreads, 0, stream>>>(
          static_cast<const opmath_t*>(job.partial_w), static_cast<param_t*>(job.dw), blocks, job.N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (job.partial_b) {
      param_reduce_kernel<opmath_t, param_t><<<rgrid, kThreads, 0, stream>>>(
          static_cast<const opmath_t*>(job.partial_b), static_cast<param_t*>(job.db), blocks, job.N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
}

void forward_cuda(const Forward& job) {
  const c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, job.device_index));
  dispatch(job, [&](auto s, auto p) { forward_typed<decltype(s), decltype(p)>(job); });
}

void backward_cuda(const Backward& job) {
  const c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, job.device_index));
  dispatch(job, [&](auto s, auto p) { backward_typed<decltype(s), decltype(p)>(job); });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CUDA) = Launchers{&forward_cuda, &backward_cuda};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) { register_kernels(m); }

}  // namespace torch_ops::norm
