// linear on CUDA: the registrations, and the bias-gradient reduction kernels.
// GEMMs (forward with the bias in cuBLASLt's epilogue, grad_weight) go through at::addmm /
// at::mm in csrc/linear.cpp; this file holds only what is ours on the GPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAException.h>
#include <torch/library.h>

#include <algorithm>

#include "torch_ops/linear.h"
#include "torch_ops/reduce_math.h"

namespace torch_ops::linear {
namespace {

using math::ceil_div;
using math::kSumBlockRows;

constexpr int kColsPerBlock = 32;  // threadIdx.x: one column each, so loads coalesce along a row
constexpr int kRowLanes = 16;      // threadIdx.y: rows split among these lanes

// partial[split][col] = sum of rows [split * rows_per_split, ...) of column col.
template <typename scalar_t, typename opmath_t>
__global__ void column_sum_partial_kernel(const scalar_t* __restrict__ data, int64_t rows, int64_t cols,
                                          int64_t row_stride, int64_t rows_per_split, opmath_t* __restrict__ partial) {
  __shared__ opmath_t lanes[kRowLanes][kColsPerBlock + 1];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColsPerBlock + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_split;
  const int64_t r1 = std::min(rows, r0 + rows_per_split);
  opmath_t total = 0;
  if (col < cols) {
    // Each lane takes every kRowLanes-th row; every kSumBlockRows of its rows the block
    // sum joins the total (the cascade of reduce_math.h, as on the CPU).
    int64_t r = r0 + threadIdx.y;
    while (r < r1) {
      opmath_t block = 0;
      for (int64_t k = 0; k < kSumBlockRows && r < r1; ++k, r += kRowLanes) {
        block += static_cast<opmath_t>(data[r * row_stride + col]);
      }
      total += block;
    }
  }
  lanes[threadIdx.y][threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    opmath_t s = lanes[0][threadIdx.x];
    for (int y = 1; y < kRowLanes; ++y) s += lanes[y][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * cols + col] = s;
  }
}

// out[col] = sum over splits of partial[split][col], cast to the output dtype.
template <typename scalar_t, typename opmath_t>
__global__ void column_sum_finish_kernel(const opmath_t* __restrict__ partial, int64_t splits, int64_t cols,
                                         scalar_t* __restrict__ out) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  opmath_t s = 0;
  for (int64_t k = 0; k < splits; ++k) s += partial[k * cols + col];
  out[col] = static_cast<scalar_t>(s);
}

}  // namespace

at::Tensor grad_bias_cuda(const at::Tensor& grad_output) {
  const auto g = grad_bias_input_2d(grad_output);
  const int64_t rows = g.size(0), cols = g.size(1);
  auto out = at::empty({cols}, g.options());
  if (cols == 0) return out;
  const c10::DeviceGuard guard(g.device());
  const auto stream = at::cuda::getCurrentCUDAStream();

  // Enough blocks to fill the GPU: split the rows when the columns alone are too few.
  const int64_t col_blocks = ceil_div(cols, kColsPerBlock);
  const int64_t target_blocks = 4 * static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  int64_t splits = std::max<int64_t>(1, std::min(ceil_div(target_blocks, col_blocks),
                                                 ceil_div(rows, kRowLanes * kSumBlockRows)));
  splits = std::min<int64_t>(splits, 65535);  // gridDim.y limit
  const int64_t rows_per_split = std::max<int64_t>(1, ceil_div(rows, splits));
  TORCH_CHECK(col_blocks <= std::numeric_limits<int32_t>::max(), "torch_ops.linear_grad_bias: too many columns (",
              cols, ")");

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "torch_ops.linear_grad_bias", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    auto partial = at::empty({splits, cols}, g.options().dtype(c10::CppTypeToScalarType<opmath_t>::value));
    column_sum_partial_kernel<scalar_t, opmath_t>
        <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)), dim3(kColsPerBlock, kRowLanes), 0,
           stream>>>(g.const_data_ptr<scalar_t>(), rows, cols, g.stride(0), rows_per_split,
                     partial.mutable_data_ptr<opmath_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    constexpr int kFinishThreads = 256;
    column_sum_finish_kernel<scalar_t, opmath_t>
        <<<static_cast<unsigned>(ceil_div(cols, kFinishThreads)), kFinishThreads, 0, stream>>>(
            partial.const_data_ptr<opmath_t>(), splits, cols, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

namespace {
// The device-generic host code, run with the input's device current.
at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const c10::DeviceGuard guard(input.device());
  return forward(input, weight, bias);
}
at::Tensor grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input) {
  const c10::DeviceGuard guard(grad_output.device());
  return grad_weight(grad_output, input);
}
}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CUDA, m) {
  m.impl("linear", &forward_cuda);
  m.impl("linear_grad_weight", &grad_weight_cuda);
  m.impl("linear_grad_bias", &grad_bias_cuda);
}

}  // namespace torch_ops::linear
