// fused on CPU: the registrations, and the backward's activation gradient fused with the
// bias reduction. Per block of rows (a fixed partition, so grad_bias does not depend on
// the thread count): grad_pre = grad_output * act'(saved) with the activation family's
// vector kernel, then the block's column sums with linear's tile kernel while the block is
// in cache; the blocks' partial sums are added in block order at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "torch_ops/alloc.h"
#include "torch_ops/fused.h"
#include "torch_ops/linear.h"
#include "torch_ops/reduce_math.h"

namespace torch_ops::fused {
namespace {

using activation::Act;

// About 64 Ki elements per block (256 KiB in float32: the block stays in L2 between the
// activation pass and the column sums), whole rows, a multiple of the sum's row block.
int64_t rows_per_block(int64_t cols) {
  const int64_t rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(cols, 1));
  return rows >= math::kSumBlockRows ? rows / math::kSumBlockRows * math::kSumBlockRows : rows;
}

template <typename scalar_t>
void act_grad_typed(Act act, at::ScalarType dtype, const scalar_t* go, const scalar_t* s, scalar_t* gp, int64_t rows, int64_t cols,
                    scalar_t* grad_bias) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto pointwise = TORCH_OPS_CPU_KERNEL(activation_pointwise<scalar_t>);
  const auto column_sum = TORCH_OPS_CPU_KERNEL(linear_column_sum_tile<scalar_t>);
  const int64_t block = rows_per_block(cols), blocks = math::ceil_div(rows, block);
  std::vector<opmath_t> partial(grad_bias != nullptr ? static_cast<size_t>(blocks * cols) : 0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * block, r1 = std::min(rows, r0 + block), offset = r0 * cols;
      activation::Pointwise job{act, activation::Pass::Backward, 0.0, dtype,
                                (r1 - r0) * cols, gp + offset, {go + offset, s + offset, nullptr}};
      pointwise(job);
      if (grad_bias != nullptr) column_sum(gp, cols, r0, r1, 0, cols, partial.data() + b * cols);
    }
  });
  if (grad_bias == nullptr) return;
  for (int64_t j = 0; j < cols; ++j) {
    opmath_t sum = blocks > 0 ? partial[j] : opmath_t(0);
    for (int64_t b = 1; b < blocks; ++b) sum += partial[b * cols + j];
    grad_bias[j] = static_cast<scalar_t>(sum);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> act_grad_cpu(const at::Tensor& grad_output, const at::Tensor& saved,
                                                c10::string_view activation, bool bias) {
  const Act act = check_act_grad_args(grad_output, saved, activation);
  const int64_t cols = grad_output.size(-1);
  auto grad_pre = empty_output(grad_output.sizes(), grad_output.options());
  auto grad_bias = at::empty({bias ? cols : 0}, grad_output.options());
  if (grad_pre.numel() == 0) {
    if (bias) grad_bias.zero_();  // no rows: the sum of nothing
    return {grad_pre, grad_bias};
  }
  const auto go = grad_output.contiguous();
  const auto s = saved.contiguous();
  const int64_t rows = go.numel() / cols;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "torch_ops.fused_linear_act_grad", [&] {
    act_grad_typed<scalar_t>(act, go.scalar_type(), go.const_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(),
                             grad_pre.mutable_data_ptr<scalar_t>(), rows, cols,
                             bias ? grad_bias.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {grad_pre, grad_bias};
}

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) {
  m.impl("fused_linear", &forward);
  m.impl("fused_linear_preact", &forward_preact);
  m.impl("fused_linear_act_grad", &act_grad_cpu);
}

}  // namespace torch_ops::fused
