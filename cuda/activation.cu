// activations on CUDA: the registrations, and one grid-stride elementwise kernel that runs
// every pass of every activation (the math: torch_ops/activation_math.h, shared with the
// CPU). Pointwise ops are the gated kernel's special case of one row.
//
// Each thread takes chunks of kVec elements (16-byte loads and stores) when every pointer
// is 16-byte aligned and no chunk crosses a row of a gated op; otherwise one element at a
// time. Indices are 64-bit; half and bfloat16 are computed in float.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "torch_ops/activation.h"
#include "torch_ops/activation_math.h"

namespace torch_ops::activation {
namespace {

constexpr int kThreads = 256;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// The tensors of one pass: NIn inputs, NOut outputs. A pointer is "full" (bit k of
// full_in / full_out) when it indexes the (outer, 2, half) input layout, already offset to
// its half; otherwise it indexes the (outer, half) layout.
template <typename scalar_t, int NIn, int NOut>
struct Args {
  const scalar_t* in[NIn];
  scalar_t* out[NOut];
  unsigned full_in;
  unsigned full_out;
};

__device__ __forceinline__ int64_t offset(bool full, int64_t i, int64_t half) {
  if (!full) return i;
  const int64_t o = i / half;
  return i + o * half;  // o * 2 * half + (i - o * half)
}

template <int Vec, typename scalar_t, int NIn, int NOut, typename F>
__global__ void elementwise_kernel(int64_t n, int64_t half, Args<scalar_t, NIn, NOut> a, F f) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t chunks = (n + Vec - 1) / Vec;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const int64_t i0 = c * Vec;
    if (Vec > 1 && i0 + Vec <= n) {
      Pack<scalar_t, Vec> x[NIn], y[NOut];
#pragma unroll
      for (int k = 0; k < NIn; ++k)
        x[k] = *reinterpret_cast<const Pack<scalar_t, Vec>*>(a.in[k] + offset(a.full_in >> k & 1, i0, half));
#pragma unroll
      for (int j = 0; j < Vec; ++j) {
        opmath_t xs[NIn], ys[NOut];
#pragma unroll
        for (int k = 0; k < NIn; ++k) xs[k] = static_cast<opmath_t>(x[k].v[j]);
        f(xs, ys);
#pragma unroll
        for (int k = 0; k < NOut; ++k) y[k].v[j] = static_cast<scalar_t>(ys[k]);
      }
#pragma unroll
      for (int k = 0; k < NOut; ++k)
        *reinterpret_cast<Pack<scalar_t, Vec>*>(a.out[k] + offset(a.full_out >> k & 1, i0, half)) = y[k];
    } else {
      for (int64_t i = i0; i < n && i < i0 + Vec; ++i) {
        opmath_t xs[NIn], ys[NOut];
#pragma unroll
        for (int k = 0; k < NIn; ++k) xs[k] = static_cast<opmath_t>(a.in[k][offset(a.full_in >> k & 1, i, half)]);
        f(xs, ys);
#pragma unroll
        for (int k = 0; k < NOut; ++k) a.out[k][offset(a.full_out >> k & 1, i, half)] = static_cast<scalar_t>(ys[k]);
      }
    }
  }
}

template <typename scalar_t, int NIn, int NOut, typename F>
void launch(int64_t n, int64_t outer, int64_t half, const Args<scalar_t, NIn, NOut>& a, const F& f) {
  if (n == 0) return;
  constexpr int kVec = 16 / sizeof(scalar_t);
  bool aligned = outer == 1 || half % kVec == 0;  // no vector crosses a row
  for (int k = 0; k < NIn; ++k) aligned = aligned && reinterpret_cast<uintptr_t>(a.in[k]) % 16 == 0;
  for (int k = 0; k < NOut; ++k) aligned = aligned && reinterpret_cast<uintptr_t>(a.out[k]) % 16 == 0;
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t max_blocks = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 16;
  if (aligned) {
    const int64_t blocks = std::min(max_blocks, ((n + kVec - 1) / kVec + kThreads - 1) / kThreads);
    elementwise_kernel<kVec><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, half, a, f);
  } else {
    const int64_t blocks = std::min(max_blocks, (n + kThreads - 1) / kThreads);
    elementwise_kernel<1><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, half, a, f);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ------------------------------------------------------------------------------ functors

template <typename A>
struct Forward {
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[1], T (&y)[1]) const {
    y[0] = act.f(x[0]);
  }
};
template <typename A>
struct Backward {
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[2], T (&y)[1]) const {
    y[0] = act.backward(x[0], x[1]);
  }
};
template <typename A>
struct DoubleBackward {
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[3], T (&y)[1]) const {
    y[0] = act.double_backward(x[0], x[1], x[2]);
  }
};
template <typename A>
struct GatedForward {  // (gate, value) -> out
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[2], T (&y)[1]) const {
    y[0] = math::gated_forward(act, x[0], x[1]);
  }
};
template <typename A>
struct GatedBackward {  // (go, gate, value) -> (d_gate, d_value)
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[3], T (&y)[2]) const {
    math::gated_backward(act, x[0], x[1], x[2], y[0], y[1]);
  }
};
template <typename A>
struct GatedDoubleBackward {  // (gg_gate, gg_value, go, gate, value) -> (d_go, d_gate, d_value)
  A act;
  template <typename T>
  __device__ void operator()(const T (&x)[5], T (&y)[3]) const {
    math::gated_double_backward(act, x[0], x[1], x[2], x[3], x[4], y[0], y[1], y[2]);
  }
};

// --------------------------------------------------------------------------------- passes

template <typename scalar_t, typename A>
void pointwise_act(const Pointwise& job, const A& act) {
  const auto in = [&](int k) { return static_cast<const scalar_t*>(job.in[k]); };
  auto* out = static_cast<scalar_t*>(job.out);
  switch (job.pass) {
    case Pass::Forward:
      return launch(job.n, 1, job.n, Args<scalar_t, 1, 1>{{in(0)}, {out}, 0, 0}, Forward<A>{act});
    case Pass::Backward:
      return launch(job.n, 1, job.n, Args<scalar_t, 2, 1>{{in(0), in(1)}, {out}, 0, 0}, Backward<A>{act});
    case Pass::DoubleBackward:
      if constexpr (A::kSmooth) {
        return launch(job.n, 1, job.n, Args<scalar_t, 3, 1>{{in(0), in(1), in(2)}, {out}, 0, 0},
                      DoubleBackward<A>{act});
      }
      break;
  }
  TORCH_CHECK(false, "torch_ops: no such pass of this activation (internal error)");
}

template <typename scalar_t>
void pointwise_typed(const Pointwise& job) {
  math::with_activation(job.act, job.param, [&](const auto& act) { pointwise_act<scalar_t>(job, act); });
}

template <typename scalar_t, typename A>
void gated_act(const Gated& job, const A& act, bool gate_first) {
  const int64_t H = job.half, n = job.outer * H;
  const int64_t g = gate_first ? 0 : H, v = gate_first ? H : 0;
  const auto in = [&](int k) { return static_cast<const scalar_t*>(job.in[k]); };
  const auto out = [&](int k) { return static_cast<scalar_t*>(job.out[k]); };
  switch (job.pass) {
    case Pass::Forward:
      return launch(n, job.outer, H, Args<scalar_t, 2, 1>{{in(0) + g, in(0) + v}, {out(0)}, 0b11, 0},
                    GatedForward<A>{act});
    case Pass::Backward:
      return launch(n, job.outer, H,
                    Args<scalar_t, 3, 2>{{in(0), in(1) + g, in(1) + v}, {out(0) + g, out(0) + v}, 0b110, 0b11},
                    GatedBackward<A>{act});
    case Pass::DoubleBackward:
      return launch(n, job.outer, H,
                    Args<scalar_t, 5, 3>{{in(0) + g, in(0) + v, in(1), in(2) + g, in(2) + v},
                                         {out(0), out(1) + g, out(1) + v},
                                         0b11011,
                                         0b110},
                    GatedDoubleBackward<A>{act});
  }
}

template <typename scalar_t>
void gated_typed(const Gated& job) {
  math::with_gate(job.gate, [&](const auto& act, bool gate_first) { gated_act<scalar_t>(job, act, gate_first); });
}

void pointwise_cuda(const Pointwise& job) {
  const c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, job.device_index));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.activation",
                                  [&] { pointwise_typed<scalar_t>(job); });
}

void gated_cuda(const Gated& job) {
  const c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, job.device_index));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.gated_activation",
                                  [&] { gated_typed<scalar_t>(job); });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CUDA) = Launchers{&pointwise_cuda, &gated_cuda};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) { register_kernels(m); }

}  // namespace torch_ops::activation
