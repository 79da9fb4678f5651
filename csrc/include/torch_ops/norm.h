// normalization: layer_norm, rms_norm and their residual variants add_layer_norm /
// add_rms_norm (normalized = norm(input + residual), also returning input + residual).
//
// Dispatcher ops (schemas in csrc/ops.cpp):
//   layer_norm(input, normalized_shape, weight?, bias?, eps)         -> (out, mean, rstd)
//   rms_norm(input, normalized_shape, weight?, eps?)                 -> (out, rstd)
//   add_layer_norm(input, residual, normalized_shape, weight?, bias?, eps) -> (out, sum, mean, rstd)
//   add_rms_norm(input, residual, normalized_shape, weight?, eps?)   -> (out, sum, rstd)
//   norm_backward(grad_output, input, mean?, rstd, normalized_shape, weight?, grad_extra?,
//                 eps, output_mask[3])                              -> (grad_input, grad_weight, grad_bias)
// The input is seen as (M, N) rows: N = prod(normalized_shape). mean and rstd have the
// input's leading shape, in the opmath dtype (float for float16/bfloat16 inputs). mean
// undefined in norm_backward means RMS normalisation (no centring, no bias); grad_extra
// (the gradient reaching input + residual directly) is added to grad_input. Outputs that
// output_mask leaves out are returned as empty (0-element) tensors.
//
// Host code (csrc/norm.cpp) is device-generic: checks, shapes, contiguous inputs,
// outputs; it hands a Forward / Backward job to the device's launcher (csrc/cpu/norm.cpp,
// cuda/norm.cu). The formulas are in torch_ops/norm_math.h, shared by both.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <array>
#include <optional>
#include <tuple>

#include "torch_ops/cpu_isa.h"
#include "torch_ops/launchers.h"

namespace torch {
class Library;
}

namespace torch_ops::norm {

// Rows of the weight/bias gradient reduction: the rows are cut into blocks of this many
// rows (a function of the shape only, never of the thread count); each block sums its rows in
// order into a partial row, and the partial rows are then added in block order. So the
// weight and bias gradients are bitwise identical from run to run and for any number of
// threads.
// At most kMaxParamBlocks blocks, and at most kMaxParamPartial partial elements (few long
// rows: fewer blocks, so the scratch stays small), but at least kMinParamBlocks blocks.
constexpr int64_t kMaxParamBlocks = 32;
constexpr int64_t kMinParamBlocks = 4;
constexpr int64_t kMaxParamPartial = int64_t(1) << 19;
inline int64_t param_block_rows(int64_t M, int64_t N) {
  int64_t blocks = N > 0 ? kMaxParamPartial / N : kMaxParamBlocks;
  blocks = blocks > kMaxParamBlocks ? kMaxParamBlocks : blocks < kMinParamBlocks ? kMinParamBlocks : blocks;
  const int64_t b = (M + blocks - 1) / blocks;
  return b < 1 ? 1 : b;
}

// y = (s - mean) * rstd * w + b per row of N elements, s = x (+ r, stored to sum).
struct Forward {
  bool rms;
  at::ScalarType dtype;        // of x, r, y, sum
  at::ScalarType param_dtype;  // of w, b (dtype, or float for float16/bfloat16)
  int64_t M, N;
  double eps;
  const void* x;
  const void* r;  // residual (nullptr: none)
  const void* w;  // nullptr: none
  const void* b;  // nullptr: none
  void* y;
  void* sum;   // x + r (when r)
  void* mean;  // opmath (nullptr for rms)
  void* rstd;  // opmath
  c10::DeviceIndex device_index = -1;
};

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) + extra, g = dy * w;
// dw = sum over rows of dy * xhat, db = sum over rows of dy.
struct Backward {
  bool rms;
  at::ScalarType dtype;
  at::ScalarType param_dtype;
  int64_t M, N;
  const void* dy;
  const void* x;
  const void* mean;  // nullptr for rms
  const void* rstd;
  const void* w;      // nullptr: none (g = dy)
  const void* extra;  // nullptr: none
  void* dx;           // nullptr: not wanted
  void* dw;           // nullptr: not wanted
  void* db;           // nullptr: not wanted
  // Scratch for the weight/bias partial rows (opmath, [blocks, N] each), from the host.
  void* partial_w;
  void* partial_b;
  int64_t block_rows;
  c10::DeviceIndex device_index = -1;
};

using ForwardLauncher = void (*)(const Forward&);
using BackwardLauncher = void (*)(const Backward&);
struct Launchers {
  ForwardLauncher forward = nullptr;
  BackwardLauncher backward = nullptr;
};
inline Launchers& launchers(c10::DeviceType device) { return device_launchers<Launchers>(device); }

void register_kernels(torch::Library& m);

// rms_norm's eps: the given one, or (as ATen's rms_norm) the epsilon of the opmath type
// when None: float64's for float64, float32's otherwise.
double rms_eps(at::ScalarType dtype, std::optional<double> eps);

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                                          const std::optional<at::Tensor>& weight,
                                                          const std::optional<at::Tensor>& bias, double eps);
std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                            const std::optional<at::Tensor>& weight, std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm(const at::Tensor& input,
                                                                          const at::Tensor& residual,
                                                                          at::IntArrayRef normalized_shape,
                                                                          const std::optional<at::Tensor>& weight,
                                                                          const std::optional<at::Tensor>& bias,
                                                                          double eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                            at::IntArrayRef normalized_shape,
                                                            const std::optional<at::Tensor>& weight,
                                                            std::optional<double> eps);
std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& mean,
    const at::Tensor& rstd, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& grad_extra, double eps, std::array<bool, 3> output_mask);

// The same backward as differentiable ATen arithmetic (mean and rstd recomputed from the
// input), used by the double backward: returns (grad_input, grad_weight, grad_bias) as
// output_mask asks, undefined otherwise.
std::array<at::Tensor, 3> norm_backward_composite(const at::Tensor& grad_output, const at::Tensor& input,
                                                  bool rms, int64_t normalized_dims, const at::Tensor& weight,
                                                  const at::Tensor& grad_extra, double eps,
                                                  std::array<bool, 3> output_mask);

}  // namespace torch_ops::norm

// The CPU kernels (csrc/cpu/kernels/norm.h, one variant per instruction set). SP is
// std::pair<scalar_t, param_t>, instantiated for (double, double), (float, float),
// (BFloat16, BFloat16|float), (Half, Half|float).
TORCH_OPS_DECLARE_CPU_KERNEL(template <typename SP> void norm_forward(const torch_ops::norm::Forward& job);
                             template <typename SP> void norm_backward(const torch_ops::norm::Backward& job);)
