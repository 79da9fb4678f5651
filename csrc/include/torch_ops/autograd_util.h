// Helpers of the Autograd-key kernels (csrc/autograd/).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <optional>

namespace torch_ops {

// Whether the call needs an autograd node. Forward-mode AD (dual tensors, torch.func.jvp)
// is refused loudly: a C++ torch::autograd::Function has no jvp, and skipping the node
// would drop the tangent silently.
inline bool any_requires_grad(const char* op, std::initializer_list<const at::Tensor*> ts) {
  for (const auto* t : ts)
    TORCH_CHECK(!t->defined() || !t->_fw_grad(/*level=*/0).defined(), "torch_ops.", op,
                ": forward-mode AD (dual tensors, torch.func.jvp/jacfwd) is not supported; use reverse mode");
  if (!at::GradMode::is_enabled()) return false;
  for (const auto* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// An optional tensor argument as save_for_backward takes it (undefined when absent), and
// back (absent when undefined).
inline const at::Tensor& val(const std::optional<at::Tensor>& t) {
  static const at::Tensor undefined;
  return t.has_value() ? *t : undefined;
}
inline std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::optional<at::Tensor>();
}

}  // namespace torch_ops
