// Every schema of the torch_ops library, in one place. Kernels are registered per
// dispatch key elsewhere: csrc/cpu/<family>.cpp (CPU), cuda/<family>.cu (CUDA),
// csrc/autograd/<family>.cpp (Autograd); fake kernels in torch_ops/<family>.py.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "torch_ops/ops.h"

TORCH_LIBRARY(torch_ops, m) {
  // Each family's fake kernels are registered in torch_ops/<family>.py; set_python_module
  // applies to the defs that follow it, and tells the dispatcher where to find them.

  // linear (csrc/linear.cpp): input (*, in), weight (out, in), bias (out) -> (*, out)
  m.set_python_module("torch_ops.linear");
  m.def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor");
  m.def("linear_grad_weight(Tensor grad_output, Tensor input) -> Tensor");
  m.def("linear_grad_bias(Tensor grad_output) -> Tensor");
  // The gradient formula of linear (CompositeImplicitAutograd, made of the three ops
  // above): returns the gradients that output_mask asks for, in the order
  // (input, weight, bias). torch_ops.autograd.LinearFunction calls it.
  m.def("linear_backward(Tensor grad_output, Tensor? input, Tensor? weight, bool[3] output_mask) -> Tensor[]");
}

namespace torch_ops::ops {
namespace {
template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}
}  // namespace

at::Tensor linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  static const auto op = handle<decltype(linear)>("torch_ops::linear");
  return op.call(input, weight, bias);
}

at::Tensor linear_grad_weight(const at::Tensor& grad_output, const at::Tensor& input) {
  static const auto op = handle<decltype(linear_grad_weight)>("torch_ops::linear_grad_weight");
  return op.call(grad_output, input);
}

at::Tensor linear_grad_bias(const at::Tensor& grad_output) {
  static const auto op = handle<decltype(linear_grad_bias)>("torch_ops::linear_grad_bias");
  return op.call(grad_output);
}

}  // namespace torch_ops::ops
