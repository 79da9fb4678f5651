// linear: y = x W^T + b.  Shapes: input (*, in), weight (out, in), bias (out) -> (*, out).
//
// Three dispatcher ops carry the whole family (schemas in csrc/ops.cpp):
//   linear(input, weight, bias?)        forward; GEMM with the bias fused (at::addmm)
//   linear_grad_weight(grad_out, input) grad_out^T . input over all leading dims
//   linear_grad_bias(grad_out)          grad_out summed over all leading dims
// and the input gradient is linear itself: grad_in = linear(grad_out, weight^T).
// Each of them has an autograd formula made of these same ops (csrc/autograd/linear.cpp),
// so every order of derivative is available.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <array>
#include <optional>
#include <vector>

#include "torch_ops/cpu_isa.h"

// acc[j - c0] = sum of data[i * row_stride + j] over rows i in [r0, r1), for columns j in
// [c0, c1), in opmath precision (csrc/cpu/kernels/linear.h, one variant per instruction set;
// instantiated for double, float, BFloat16 and Half).
TORCH_OPS_DECLARE_CPU_KERNEL(template <typename scalar_t> void linear_column_sum_tile(
    const scalar_t* data, int64_t row_stride, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
    at::opmath_type<scalar_t>* acc);)

namespace torch_ops::linear {

// Device-generic host code (csrc/linear.cpp): checks, reshapes, GEMM library calls.
// The CPU and CUDA registrations call these; only the bias reduction is per device.
// The argument checks of linear, shared by the fused family (messages name `op`): input
// (*, in) floating, weight (out, in) and bias (out) of its dtype and device.
void check_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                const std::optional<at::Tensor>& bias);

// t (*, k) as (rows, k): t itself when 2-D, a view when the strides allow it, else a copy
// (at::reshape). Every new tensor costs a few hundred ns on a small call.
at::Tensor as_2d(const at::Tensor& t);

// t's sizes with the last one replaced.
std::vector<int64_t> with_last(const at::Tensor& t, int64_t last);

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias);
at::Tensor grad_weight(const at::Tensor& grad_output, const at::Tensor& input);

// Checks grad_output and returns it as a 2-D (rows, out) view with unit column stride,
// the layout the per-device bias reductions take.
at::Tensor grad_bias_input_2d(const at::Tensor& grad_output);

// The bias reductions: out[j] = sum_i g2d[i][j], accumulated in opmath precision.
at::Tensor grad_bias_cpu(const at::Tensor& grad_output);   // csrc/cpu/linear.cpp
at::Tensor grad_bias_cuda(const at::Tensor& grad_output);  // cuda/linear.cu (CUDA builds only)

// The gradient formula of linear, written once: used by the dispatcher op's autograd
// node and by the Python torch_ops.autograd.LinearFunction. It calls dispatcher ops, so
// its result is differentiable again (double backward). `input` may be undefined when
// mask[1] is false, `weight` when mask[0] is false.
std::array<at::Tensor, 3> backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                   std::array<bool, 3> mask);

}  // namespace torch_ops::linear
