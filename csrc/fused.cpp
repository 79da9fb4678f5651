// fused: device-generic host code. Checks (linear's), the blocked GEMM + epilogue of the
// forward, and the gradient formula. The epilogue is the activation family's pointwise
// launcher of the tensor's device; the backward's per-device kernel is fused_linear_act_grad
// (csrc/cpu/fused.cpp, cuda/fused.cu).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>

#include "torch_ops/alloc.h"
#include "torch_ops/checks.h"
#include "torch_ops/fused.h"
#include "torch_ops/linear.h"
#include "torch_ops/ops.h"

namespace torch_ops::fused {

using activation::Act;

std::optional<Act> parse_activation(std::optional<c10::string_view> name, const char* op) {
  if (!name.has_value()) return std::nullopt;
  const c10::string_view a = *name;
  if (a == "relu") return Act::Relu;
  if (a == "gelu") return Act::GeluErf;
  if (a == "gelu_tanh") return Act::GeluTanh;
  if (a == "silu") return Act::Silu;
  TORCH_CHECK_VALUE(false, "torch_ops.", op, ": expected activation to be None, 'relu', 'gelu', 'gelu_tanh' or ",
                    "'silu', got '", std::string(a.data(), a.size()), "'");
}

const char* activation_name(Act act) {
  switch (act) {
    case Act::Relu:
      return "relu";
    case Act::GeluErf:
      return "gelu";
    case Act::GeluTanh:
      return "gelu_tanh";
    case Act::Silu:
      return "silu";
    default:
      TORCH_INTERNAL_ASSERT(false, "torch_ops.fused_linear: not a fused activation");
  }
}

bool needs_preact(Act act) { return act != Act::Relu; }

namespace {

// Rows per block on CPU: an output block of about 256 Ki elements (1 MiB in float32, in
// L2/L3 when the epilogue reads it back), and at least 256 rows so that each GEMM keeps
// BLAS efficient (every call packs the weight again).
int64_t cpu_rows_per_block(int64_t rows, int64_t cols) {
  const int64_t target = std::max<int64_t>(256, (int64_t(1) << 18) / std::max<int64_t>(cols, 1));
  return std::min(rows, target);
}

// out[r0:r1] = act(x[r0:r1] W^T + b); pre[r0:r1] = the pre-activation when `pre` is defined.
void rows(const at::Tensor& x2d, const at::Tensor& wt, const std::optional<at::Tensor>& bias,
          std::optional<Act> act, const at::Tensor& out2d, const at::Tensor& pre2d, int64_t r0, int64_t r1) {
  const auto x = x2d.narrow(0, r0, r1 - r0);
  at::Tensor dst = (pre2d.defined() ? pre2d : out2d).narrow(0, r0, r1 - r0);
  if (bias.has_value() && bias->defined()) {
    at::addmm_out(dst, *bias, x, wt);
  } else {
    at::mm_out(dst, x, wt);
  }
  if (!act.has_value()) return;
  // The epilogue on the block just written (in place when nothing else is kept).
  const int64_t n = (r1 - r0) * out2d.size(1);
  auto* out = static_cast<char*>(out2d.data_ptr()) + r0 * out2d.size(1) * out2d.element_size();
  activation::Pointwise job{*act, activation::Pass::Forward, 0.0, out2d.scalar_type(), n, out,
                            {dst.const_data_ptr(), nullptr, nullptr}};
  job.device_index = out2d.device().index();
  activation::launchers(out2d.device().type()).pointwise(job);
}

// The forward of both ops: pre is computed (and returned) only when want_pre.
std::tuple<at::Tensor, at::Tensor> run(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, std::optional<Act> act, bool want_pre) {
  linear::check_args(op, input, weight, bias);
  const auto x2d = linear::as_2d(input);
  const auto wt = weight.t();  // a view: BLAS reads it transposed
  const int64_t m = x2d.size(0), n = weight.size(0);
  auto out2d = empty_output({m, n}, input.options());
  at::Tensor pre2d = want_pre ? empty_output({m, n}, input.options()) : at::Tensor();
  if (m > 0 && n > 0) {
    TORCH_CHECK(!act.has_value() || activation::launchers(input.device().type()).pointwise != nullptr, "torch_ops.",
                op, ": no kernel for device ", input.device());
    if (input.is_cpu()) {
      const int64_t block = cpu_rows_per_block(m, n), blocks = (m + block - 1) / block;
      // One block per task: each thread runs its GEMM (single-threaded inside the parallel
      // region) and the epilogue on the block it just wrote.
      // The GEMM is a dispatcher call: worker threads take the caller's thread-local
      // state (below autograd, autocast excluded, ...), which at::parallel_for does not pass on.
      const at::ThreadLocalState caller_state;
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        const at::ThreadLocalStateGuard state_guard(caller_state);
        for (int64_t b = b0; b < b1; ++b) rows(x2d, wt, bias, act, out2d, pre2d, b * block, std::min(m, (b + 1) * block));
      });
    } else {
      rows(x2d, wt, bias, act, out2d, pre2d, 0, m);
    }
  }
  const auto shape = linear::with_last(input, n);
  if (input.dim() == 2) return {out2d, pre2d};
  return {out2d.view(shape), want_pre ? pre2d.view(shape) : pre2d};
}

}  // namespace

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   std::optional<c10::string_view> activation) {
  const auto act = parse_activation(activation, "fused_linear");
  return std::get<0>(run("fused_linear", input, weight, bias, act, /*want_pre=*/false));
}

std::tuple<at::Tensor, at::Tensor> forward_preact(const at::Tensor& input, const at::Tensor& weight,
                                                  const std::optional<at::Tensor>& bias, c10::string_view activation) {
  const auto act = parse_activation(activation, "fused_linear_preact");
  // Without an activation the pre-activation is the output: one tensor, returned twice
  // would alias, so the op asks for an activation.
  TORCH_CHECK(act.has_value(), "torch_ops.fused_linear_preact: expected an activation");
  return run("fused_linear_preact", input, weight, bias, act, /*want_pre=*/true);
}

Act check_act_grad_args(const at::Tensor& grad_output, const at::Tensor& saved, c10::string_view activation) {
  constexpr const char* op = "fused_linear_act_grad";
  const auto act = parse_activation(activation, op);
  TORCH_CHECK(act.has_value(), "torch_ops.", op, ": expected an activation");
  check_defined(grad_output, op, "grad_output");
  check_defined(saved, op, "saved");
  check_min_dim(grad_output, 1, op, "grad_output");
  check_floating(grad_output, op, "grad_output");
  check_same_dtype(grad_output, "grad_output", saved, "saved", op);
  check_same_device(grad_output, "grad_output", saved, "saved", op);
  TORCH_CHECK(saved.sizes() == grad_output.sizes(), "torch_ops.", op, ": expected saved to have the shape of ",
              "grad_output ", grad_output.sizes(), ", got ", saved.sizes());
  return *act;
}

std::array<at::Tensor, 3> backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& bias, const at::Tensor& saved, std::optional<Act> act,
                                   std::array<bool, 3> mask) {
  at::Tensor grad_pre = grad_output, grad_bias;
  if (act.has_value()) {
    at::Tensor s = saved;
    if (needs_preact(*act) && at::GradMode::is_enabled()) {
      // create_graph: the pre-activation as a function of input, weight and bias.
      TORCH_CHECK(input.defined() && weight.defined(),
                  "torch_ops.fused_linear_backward: a differentiable backward needs input and weight");
      s = ops::linear(input, weight, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
    }
    TORCH_CHECK(s.defined(), "torch_ops.fused_linear_backward: expected the tensor saved by the forward");
    auto [g, gb] = ops::fused_linear_act_grad(grad_output, s, activation_name(*act), mask[2]);
    grad_pre = g;
    if (mask[2]) grad_bias = gb;
  } else if (mask[2]) {
    grad_bias = ops::linear_grad_bias(grad_output);
  }
  at::Tensor grad_input, grad_weight;
  if (mask[0]) grad_input = ops::linear(grad_pre, weight.t(), std::nullopt);  // grad_pre . W
  if (mask[1]) grad_weight = ops::linear_grad_weight(grad_pre, input);        // grad_pre^T . x
  return {grad_input, grad_weight, grad_bias};
}

namespace {
std::vector<at::Tensor> backward_op(const at::Tensor& grad_output, const std::optional<at::Tensor>& input,
                                    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                                    const std::optional<at::Tensor>& saved,
                                    std::optional<c10::string_view> activation, std::array<bool, 3> mask) {
  const auto act = parse_activation(activation, "fused_linear_backward");
  TORCH_CHECK(!mask[0] || (weight.has_value() && weight->defined()),
              "torch_ops.fused_linear_backward: the input gradient needs weight");
  TORCH_CHECK(!mask[1] || (input.has_value() && input->defined()),
              "torch_ops.fused_linear_backward: the weight gradient needs input");
  const auto g = backward(grad_output, input.value_or(at::Tensor()), weight.value_or(at::Tensor()),
                          bias.value_or(at::Tensor()), saved.value_or(at::Tensor()), act, mask);
  std::vector<at::Tensor> out;
  for (int i = 0; i < 3; ++i)
    if (mask[i]) out.push_back(g[i]);
  return out;
}
}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CompositeImplicitAutograd, m) { m.impl("fused_linear_backward", &backward_op); }

}  // namespace torch_ops::fused
