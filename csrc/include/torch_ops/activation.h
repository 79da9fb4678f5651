// activations: relu, leaky_relu, gelu ('none' / 'tanh'), silu, sigmoid, tanh, and the
// gated units glu, swiglu, geglu (out = value * act(gate), the input cut in two along dim).
//
// Dispatcher ops (schemas in csrc/ops.cpp), per activation:
//   <act>(input, ...)                           forward
//   <act>_(self, ...)                           in place (relu, leaky_relu, silu)
//   <act>_backward(grad_output, s, ...)         s = input, or the result for relu / sigmoid / tanh
//   <act>_double_backward(gg, grad_output, s)   gg . d(<act>_backward)/ds (smooth activations)
// and for the gated units <g>(input, dim), <g>_backward(grad_output, input, dim) -> the
// gradient of the whole input, <g>_double_backward(gg, grad_output, input, dim) ->
// (d grad_output, d input). Autograd (csrc/autograd/activation.cpp) is made of these ops.
//
// The host code (csrc/activation.cpp: checks, shapes, contiguous inputs, outputs) is
// device-generic; it describes the work as a Pointwise or Gated job and hands it to the
// device's launcher (csrc/cpu/activation.cpp, cuda/activation.cu). The math is in
// torch_ops/activation_math.h, shared by both launchers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <c10/util/string_view.h>

#include <string_view>
#include <tuple>

#include "torch_ops/cpu_isa.h"
#include "torch_ops/launchers.h"

namespace torch {
class Library;
}

namespace torch_ops::activation {

enum class Act : int { Relu, LeakyRelu, GeluErf, GeluTanh, Silu, Sigmoid, Tanh };
enum class Gate : int { Glu, Swiglu, GegluErf, GegluTanh };

// Forward: out[0] = f(in[0]).
// Backward: out[0] = in[0] (grad_output) * f'(s = in[1]) (from the input or the result).
// DoubleBackward: out[0] = in[0] (gg) * in[1] (grad_output) * d f'/ds (s = in[2]).
enum class Pass : int { Forward, Backward, DoubleBackward };

// n elements, every pointer contiguous, all of one dtype. out may equal in[0] (in place).
struct Pointwise {
  Act act;
  Pass pass;
  double param;  // leaky_relu's negative_slope
  at::ScalarType dtype;
  int64_t n;
  void* out;
  const void* in[3];
  c10::DeviceIndex device_index = -1;  // the tensors' device (CUDA)
};

// The input is contiguous and seen as (outer, 2, half): half = size(dim) / 2 * inner.
// Forward:        in[0] = x (outer, 2, half)              -> out[0] = y (outer, half)
// Backward:       in[0] = go (outer, half), in[1] = x     -> out[0] = grad_x (outer, 2, half)
// DoubleBackward: in[0] = gg (outer, 2, half), in[1] = go, in[2] = x
//                                                          -> out[0] = d_go, out[1] = d_x
struct Gated {
  Gate gate;
  Pass pass;
  at::ScalarType dtype;
  int64_t outer;
  int64_t half;
  void* out[2];
  const void* in[3];
  c10::DeviceIndex device_index = -1;
};

using PointwiseLauncher = void (*)(const Pointwise&);
using GatedLauncher = void (*)(const Gated&);

// The launchers of each device, set by csrc/cpu/activation.cpp and cuda/activation.cu.
struct Launchers {
  PointwiseLauncher pointwise = nullptr;
  GatedLauncher gated = nullptr;
};
inline Launchers& launchers(c10::DeviceType device) { return device_launchers<Launchers>(device); }

// Registers the host code below as the kernels of every activation op, for the backend
// whose TORCH_LIBRARY_IMPL block calls it (CPU, CUDA).
void register_kernels(torch::Library& m);

// The device-generic host code (csrc/activation.cpp), registered by each backend file.
at::Tensor relu(const at::Tensor& input);
at::Tensor& relu_(at::Tensor& self);
at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor leaky_relu(const at::Tensor& input, double negative_slope);
at::Tensor& leaky_relu_(at::Tensor& self, double negative_slope);
at::Tensor leaky_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, double negative_slope);
at::Tensor gelu(const at::Tensor& input, c10::string_view approximate);
at::Tensor gelu_backward(const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate);
at::Tensor gelu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& input, c10::string_view approximate);
at::Tensor silu(const at::Tensor& input);
at::Tensor& silu_(at::Tensor& self);
at::Tensor silu_backward(const at::Tensor& grad_output, const at::Tensor& input);
at::Tensor silu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& input);
at::Tensor sigmoid(const at::Tensor& input);
at::Tensor sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor sigmoid_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                   const at::Tensor& result);
at::Tensor tanh(const at::Tensor& input);
at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& result);
at::Tensor tanh_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& result);

at::Tensor glu(const at::Tensor& input, int64_t dim);
at::Tensor glu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
std::tuple<at::Tensor, at::Tensor> glu_double_backward(const at::Tensor& grad_grad_input,
                                                       const at::Tensor& grad_output, const at::Tensor& input,
                                                       int64_t dim);
at::Tensor swiglu(const at::Tensor& input, int64_t dim);
at::Tensor swiglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim);
std::tuple<at::Tensor, at::Tensor> swiglu_double_backward(const at::Tensor& grad_grad_input,
                                                          const at::Tensor& grad_output, const at::Tensor& input,
                                                          int64_t dim);
at::Tensor geglu(const at::Tensor& input, int64_t dim, c10::string_view approximate);
at::Tensor geglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim,
                          c10::string_view approximate);
std::tuple<at::Tensor, at::Tensor> geglu_double_backward(const at::Tensor& grad_grad_input,
                                                         const at::Tensor& grad_output, const at::Tensor& input,
                                                         int64_t dim, c10::string_view approximate);

}  // namespace torch_ops::activation

// The CPU kernels (csrc/cpu/kernels/activation.h, one variant per instruction set).
// Instantiated for double, float, BFloat16 and Half; the caller dispatches on the dtype.
TORCH_OPS_DECLARE_CPU_KERNEL(template <typename scalar_t> void activation_pointwise(
                                 const torch_ops::activation::Pointwise& job);
                             template <typename scalar_t> void activation_gated(const torch_ops::activation::Gated& job);)
