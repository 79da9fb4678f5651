// Argument checks shared by every op: each message names the op, the argument, what was
// expected and what was given, e.g.
//   torch_ops.linear: expected weight to be 2-D, got 3-D
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace torch_ops {

inline void check_defined(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), "torch_ops.", op, ": expected ", name, " to be a tensor, got an undefined tensor");
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == dim, "torch_ops.", op, ": expected ", name, " to be ", dim, "-D, got ", t.dim(), "-D (shape ",
              t.sizes(), ")");
}

inline void check_min_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  TORCH_CHECK(t.dim() >= dim, "torch_ops.", op, ": expected ", name, " to have at least ", dim, " dimension(s), got ",
              t.dim(), "-D");
}

// The dtypes every op computes in (float8 and complex are not among them).
inline bool is_supported_float(at::ScalarType t) {
  return t == at::kDouble || t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(is_supported_float(t.scalar_type()), "torch_ops.", op, ": expected ", name,
              " to have a floating-point dtype (float64, float32, float16 or bfloat16), got ", t.scalar_type());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name,
                             const char* op) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "torch_ops.", op, ": expected ", b_name, " to have the dtype of ",
              a_name, " (", a.scalar_type(), "), got ", b.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name,
                              const char* op) {
  TORCH_CHECK(a.device() == b.device(), "torch_ops.", op, ": expected ", b_name, " to be on the device of ", a_name,
              " (", a.device(), "), got ", b.device());
}

inline void check_size(const at::Tensor& t, int64_t dim, int64_t expected, const char* op, const char* name,
                       const char* what) {
  TORCH_CHECK(t.size(dim) == expected, "torch_ops.", op, ": expected ", name, ".size(", dim, ") == ", expected, " (",
              what, "), got ", t.size(dim), " (", name, " shape ", t.sizes(), ")");
}

}  // namespace torch_ops
