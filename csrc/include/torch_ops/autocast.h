// Helpers of the Autocast-key kernels (csrc/autograd/<family>.cpp).
//
// Each op follows what PyTorch's autocast policy does with its torch counterpart on that
// device (ATen/autocast_mode.h and .cpp; the CPU lists differ from the CUDA ones):
//   lower precision  cast the floating inputs to the autocast dtype (linear, fused_linear,
//                    the GEMM of linear_cross_entropy);
//   fp32             cast the floating inputs to float32 (CUDA: layer_norm, rms_norm;
//                    CPU and CUDA: cross_entropy);
//   input dtype      run in the inputs' own dtypes, as ops that autocast does not list
//                    (CPU: layer_norm, rms_norm, softmax; every device: the backward ops).
// In every case autocast is switched off below the op, so the ATen calls inside our kernels
// (at::mm in a GEMM, sums) keep the dtypes of their inputs, as the fake kernels say.
#pragma once

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <optional>

namespace torch_ops::autocast {

// Autocast off for the rest of the scope.
struct Off {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

// The "input dtype" policy as a boxed kernel for any op: m.impl(name, autocast::passthrough()).
inline void call_without_autocast(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const Off off;
  op.callBoxed(stack);
}
inline torch::CppFunction passthrough() {
  return torch::CppFunction::makeFromBoxedFunction<&call_without_autocast>();
}

// The casts of the policies. Eligible tensors (floating point, not float64, on the
// device) are cast; others (float64, integer targets, other devices) are left as they are.
template <c10::DeviceType device>
at::Tensor fp32(const at::Tensor& t) {
  return at::autocast::cached_cast(at::kFloat, t, device);
}
template <c10::DeviceType device>
std::optional<at::Tensor> fp32(const std::optional<at::Tensor>& t) {
  return at::autocast::cached_cast(at::kFloat, t, device);
}
template <c10::DeviceType device>
at::Tensor lower(const at::Tensor& t) {
  return at::autocast::cached_cast(at::autocast::get_lower_precision_fp_from_device_type(device), t, device);
}
template <c10::DeviceType device>
std::optional<at::Tensor> lower(const std::optional<at::Tensor>& t) {
  return at::autocast::cached_cast(at::autocast::get_lower_precision_fp_from_device_type(device), t, device);
}
template <c10::DeviceType device>
bool eligible(const at::Tensor& t) {
  return at::autocast::is_eligible(t, device);
}

}  // namespace torch_ops::autocast
