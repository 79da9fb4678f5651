// fused on CUDA: the registrations, and the backward's activation gradient fused with the
// bias reduction (the forward is the device-generic host code: cuBLAS with the bias fused,
// then the activation family's elementwise kernel).
//
// act_grad_kernel: thread (column j, row chunk c) walks the rows of its chunk, writes
// grad_pre = grad_output * act'(saved) (activation_math.h, shared with the CPU) and, for the
// bias, sums what it wrote in float; a warp reads 32 consecutive columns of a row
// (coalesced). sum_chunks_kernel then adds the chunks' partial sums in chunk order: the
// result does not depend on scheduling (no atomics).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "torch_ops/activation_math.h"
#include "torch_ops/fused.h"
#include "torch_ops/reduce_math.h"

namespace torch_ops::fused {
namespace {

using activation::Act;
using math::ceil_div;

constexpr int kThreads = 128;

// The formula object of each activation fused_linear takes (the others are never asked for,
// so their kernels are not instantiated).
template <typename F>
void with_fused_activation(Act act, F&& f) {
  switch (act) {
    case Act::Relu:
      return f(math::Relu{});
    case Act::GeluErf:
      return f(math::GeluErf{});
    case Act::GeluTanh:
      return f(math::GeluTanh{});
    case Act::Silu:
      return f(math::Silu{});
    default:
      TORCH_INTERNAL_ASSERT(false, "torch_ops.fused_linear_act_grad: not a fused activation");
  }
}

template <typename scalar_t, typename A>
__global__ void act_grad_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ s,
                                scalar_t* __restrict__ gp, at::opmath_type<scalar_t>* __restrict__ partial,
                                int64_t rows, int64_t cols, int64_t rows_per_chunk, A act) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const int64_t c = blockIdx.y;
  const int64_t r0 = c * rows_per_chunk, r1 = rows < r0 + rows_per_chunk ? rows : r0 + rows_per_chunk;
  opmath_t sum = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + j;
    const scalar_t g = static_cast<scalar_t>(act.backward(static_cast<opmath_t>(go[i]), static_cast<opmath_t>(s[i])));
    gp[i] = g;
    sum += static_cast<opmath_t>(g);  // the bias gradient sums the gradient as stored, as on the CPU
  }
  if (partial != nullptr) partial[c * cols + j] = sum;
}

template <typename scalar_t>
__global__ void sum_chunks_kernel(const at::opmath_type<scalar_t>* __restrict__ partial, scalar_t* __restrict__ out,
                                  int64_t chunks, int64_t cols) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  at::opmath_type<scalar_t> sum = 0;
  for (int64_t c = 0; c < chunks; ++c) sum += partial[c * cols + j];
  out[j] = static_cast<scalar_t>(sum);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> act_grad_cuda(const at::Tensor& grad_output, const at::Tensor& saved,
                                                 c10::string_view activation, bool bias) {
  const Act act = check_act_grad_args(grad_output, saved, activation);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const int64_t cols = grad_output.size(-1);
  auto grad_pre = at::empty(grad_output.sizes(), grad_output.options());
  auto grad_bias = at::empty({bias ? cols : 0}, grad_output.options());
  if (grad_pre.numel() == 0) {
    if (bias) grad_bias.zero_();
    return {grad_pre, grad_bias};
  }
  const auto go = grad_output.contiguous();
  const auto s = saved.contiguous();
  const int64_t rows = go.numel() / cols;
  // Enough (column block, row chunk) blocks to fill the GPU several times over; at least
  // 16 rows per chunk so that a thread has a row loop worth its setup.
  const int64_t col_blocks = ceil_div(cols, kThreads);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want_chunks = std::max<int64_t>(1, ceil_div(8 * sms, col_blocks));
  const int64_t rows_per_chunk = std::max<int64_t>(16, ceil_div(rows, std::min<int64_t>(want_chunks, 65535)));
  const int64_t chunks = ceil_div(rows, rows_per_chunk);
  TORCH_CHECK(col_blocks <= std::numeric_limits<int32_t>::max() && chunks <= 65535,
              "torch_ops.fused_linear_act_grad: grad_output too large for the CUDA kernel's grid: ", go.sizes());
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "torch_ops.fused_linear_act_grad", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    at::Tensor partial;
    if (bias) partial = at::empty({chunks, cols}, go.options().dtype(c10::CppTypeToScalarType<opmath_t>::value));
    opmath_t* partial_ptr = bias ? partial.mutable_data_ptr<opmath_t>() : nullptr;
    with_fused_activation(act, [&](const auto& a) {
      using A = std::decay_t<decltype(a)>;
      const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
      act_grad_kernel<scalar_t, A><<<grid, kThreads, 0, stream>>>(go.const_data_ptr<scalar_t>(),
                                                                  s.const_data_ptr<scalar_t>(),
                                                                  grad_pre.mutable_data_ptr<scalar_t>(), partial_ptr,
                                                                  rows, cols, rows_per_chunk, a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (bias) {
      sum_chunks_kernel<scalar_t><<<static_cast<unsigned>(col_blocks), kThreads, 0, stream>>>(
          partial_ptr, grad_bias.mutable_data_ptr<scalar_t>(), chunks, cols);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_pre, grad_bias};
}

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) {
  m.impl("fused_linear", &forward);
  m.impl("fused_linear_preact", &forward_preact);
  m.impl("fused_linear_act_grad", &act_grad_cuda);
}

}  // namespace torch_ops::fused
