// linear: device-generic host code. The GEMMs go to the backend's BLAS through at::mm /
// at::addmm (MKL or oneDNN on CPU, cuBLAS/cuBLASLt on CUDA, bias fused into the GEMM);
// the checks, the reshaping and the bias reduction (csrc/cpu, cuda/) are ours.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "torch_ops/alloc.h"
#include "torch_ops/checks.h"
#include "torch_ops/linear.h"
#include "torch_ops/ops.h"

namespace torch_ops::linear {
namespace {

// Product of all sizes but the last: the number of rows of the 2-D view.
int64_t leading_rows(const at::Tensor& t) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) rows *= t.size(d);
  return rows;
}

}  // namespace

void check_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                const std::optional<at::Tensor>& bias) {
  check_min_dim(input, 1, op, "input");
  check_dim(weight, 2, op, "weight");
  check_floating(input, op, "input");
  check_same_dtype(input, "input", weight, "weight", op);
  check_same_device(input, "input", weight, "weight", op);
  TORCH_CHECK(input.size(-1) == weight.size(1), "torch_ops.", op, ": expected input.size(-1) to equal in_features = ",
              "weight.size(1) = ", weight.size(1), ", got input shape ", input.sizes(), " and weight shape ",
              weight.sizes());
  if (bias.has_value() && bias->defined()) {
    check_dim(*bias, 1, op, "bias");
    check_size(*bias, 0, weight.size(0), op, "bias", "out_features = weight.size(0)");
    check_same_dtype(input, "input", *bias, "bias", op);
    check_same_device(input, "input", *bias, "bias", op);
  }
}

at::Tensor as_2d(const at::Tensor& t) { return t.dim() == 2 ? t : t.reshape({leading_rows(t), t.size(-1)}); }

std::vector<int64_t> with_last(const at::Tensor& t, int64_t last) {
  std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
  sizes.back() = last;
  return sizes;
}

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_args("linear", input, weight, bias);
  const bool has_bias = bias.has_value() && bias->defined();
  const auto x2d = as_2d(input);
  const auto wt = weight.t();  // a view: BLAS reads it transposed, no copy
  at::Tensor y2d;
  if (input.is_cpu()) {  // a fresh output of several MiB: huge pages (torch_ops/alloc.h)
    y2d = empty_output({x2d.size(0), weight.size(0)}, input.options());
    has_bias ? at::addmm_out(y2d, *bias, x2d, wt) : at::mm_out(y2d, x2d, wt);
  } else {
    y2d = has_bias ? at::addmm(*bias, x2d, wt) : at::mm(x2d, wt);
  }
  return input.dim() == 2 ? y2d : y2d.view(with_last(input, weight.size(0)));
}

at::Tensor grad_weight(const at::Tensor& grad_output, const at::Tensor& input) {
  constexpr const char* op = "linear_grad_weight";
  check_min_dim(grad_output, 1, op, "grad_output");
  check_floating(grad_output, op, "grad_output");
  check_same_dtype(grad_output, "grad_output", input, "input", op);
  check_same_device(grad_output, "grad_output", input, "input", op);
  TORCH_CHECK(input.dim() == grad_output.dim() &&
                  input.sizes().slice(0, input.dim() - 1) == grad_output.sizes().slice(0, grad_output.dim() - 1),
              "torch_ops.linear_grad_weight: expected input and grad_output to have the same leading dimensions, "
              "got input shape ",
              input.sizes(), " and grad_output shape ", grad_output.sizes());
  // (out, rows) x (rows, in): the transposed operand is a view, BLAS reads it as such.
  return at::mm(as_2d(grad_output).t(), as_2d(input));
}

at::Tensor grad_bias_input_2d(const at::Tensor& grad_output) {
  constexpr const char* op = "linear_grad_bias";
  check_min_dim(grad_output, 1, op, "grad_output");
  check_floating(grad_output, op, "grad_output");
  auto g2d = as_2d(grad_output);  // expanded gradients stay views (row stride 0)
  if (g2d.size(1) > 1 && g2d.stride(1) != 1) g2d = g2d.contiguous();
  return g2d;
}

std::array<at::Tensor, 3> backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                   std::array<bool, 3> mask) {
  at::Tensor grad_input, grad_weight, grad_bias;
  if (mask[0]) grad_input = ops::linear(grad_output, weight.t(), std::nullopt);  // grad_out . W
  if (mask[1]) grad_weight = ops::linear_grad_weight(grad_output, input);        // grad_out^T . x
  if (mask[2]) grad_bias = ops::linear_grad_bias(grad_output);                   // sum over rows
  return {grad_input, grad_weight, grad_bias};
}

namespace {
std::vector<at::Tensor> backward_op(const at::Tensor& grad_output, const std::optional<at::Tensor>& input,
                                    const std::optional<at::Tensor>& weight, std::array<bool, 3> mask) {
  TORCH_CHECK(!mask[0] || (weight.has_value() && weight->defined()),
              "torch_ops.linear_backward: the input gradient needs weight");
  TORCH_CHECK(!mask[1] || (input.has_value() && input->defined()),
              "torch_ops.linear_backward: the weight gradient needs input");
  const auto g = backward(grad_output, input.value_or(at::Tensor()), weight.value_or(at::Tensor()), mask);
  std::vector<at::Tensor> out;
  for (int i = 0; i < 3; ++i)
    if (mask[i]) out.push_back(g[i]);
  return out;
}
}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CompositeImplicitAutograd, m) { m.impl("linear_backward", &backward_op); }

}  // namespace torch_ops::linear
