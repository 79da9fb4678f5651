// fused: y = act(x W^T + b) with the bias and the activation in the GEMM's epilogue.
// act is one of None, relu, gelu (erf), gelu_tanh, silu; the scalar math is the
// activation family's (torch_ops/activation_math.h).
//
// Dispatcher ops (schemas in csrc/ops.cpp):
//   fused_linear(input, weight, bias?, activation?)        the value; saves nothing
//   fused_linear_preact(input, weight, bias?, activation)  (value, pre-activation): what the
//                                                          autograd node runs when the
//                                                          activation's gradient needs x W^T + b
//   fused_linear_act_grad(grad_output, saved, activation, bias)
//        (grad_pre, grad_bias): grad_pre = grad_output * act'(saved) and, when bias is true,
//        grad_bias = grad_pre summed over the rows, in one pass (saved: the output for relu,
//        the pre-activation for gelu / gelu_tanh / silu); grad_bias is (0,) when bias is false
//   fused_linear_backward(...)                             the gradient formula (composite)
//
// On CPU the rows are cut into blocks (a few hundred KiB of output each): per block, one
// GEMM (at::addmm_out, the bias in it) and the activation on the block while it is still
// in cache, blocks in parallel. The backward's activation gradient and bias reduction run
// per block as well, with a fixed block partition, so grad_bias does not depend on the
// thread count. On CUDA the GEMM is cuBLAS (bias fused) followed by one activation kernel,
// and the backward is one kernel of ours (cuda/fused.cu).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <optional>
#include <tuple>

#include "torch_ops/activation.h"

namespace torch_ops::fused {

// The activation of a fused_linear: nullopt for None. Unknown names are a clear error.
std::optional<activation::Act> parse_activation(std::optional<c10::string_view> name, const char* op);
const char* activation_name(activation::Act act);
// Whether the activation's gradient is taken from the pre-activation (gelu, silu) rather
// than from the output (relu).
bool needs_preact(activation::Act act);

// Device-generic host code (csrc/fused.cpp), registered for CPU and CUDA.
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   std::optional<c10::string_view> activation);
std::tuple<at::Tensor, at::Tensor> forward_preact(const at::Tensor& input, const at::Tensor& weight,
                                                  const std::optional<at::Tensor>& bias, c10::string_view activation);

// Checks of fused_linear_act_grad; returns the activation. Shared by both devices.
activation::Act check_act_grad_args(const at::Tensor& grad_output, const at::Tensor& saved,
                                    c10::string_view activation);

// The per-device activation gradient + bias reduction (csrc/cpu/fused.cpp, cuda/fused.cu).
std::tuple<at::Tensor, at::Tensor> act_grad_cpu(const at::Tensor& grad_output, const at::Tensor& saved,
                                                c10::string_view activation, bool bias);
std::tuple<at::Tensor, at::Tensor> act_grad_cuda(const at::Tensor& grad_output, const at::Tensor& saved,
                                                 c10::string_view activation, bool bias);

// The gradient formula, written once: the autograd node's backward and the composite op
// fused_linear_backward (which FusedLinearFunction calls). Made of dispatcher ops with
// autograd of their own, so it is differentiable again. `saved` is what the forward saved
// (output for relu, pre-activation for the smooth ones, undefined for None). When grad mode
// is on (create_graph), a smooth activation's pre-activation is recomputed from input,
// weight and bias with linear, so that the double backward sees its dependence on them.
std::array<at::Tensor, 3> backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& saved,
                                   std::optional<activation::Act> act, std::array<bool, 3> mask);

}  // namespace torch_ops::fused
