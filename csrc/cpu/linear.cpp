// linear on CPU: the registrations, and the bias-gradient reduction. Its inner loop is the
// vectorised tile kernel of csrc/cpu/kernels/linear.h, one variant per instruction set.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "torch_ops/linear.h"
#include "torch_ops/reduce_math.h"

namespace torch_ops::linear {
namespace {

using math::ceil_div;
using math::kSumBlockRows;

// out[j] = sum_i data[i * row_stride + j]. The work is cut into R row chunks x C column
// chunks, one task each; a tall matrix is cut by rows (partial sums per chunk, added in
// chunk order at the end), a wide one by columns. R is a function of the shape only, never
// of the thread count, so the sums are bitwise the same for any torch.set_num_threads (the
// column chunks change no sum: each column is summed by one task, in row order).
template <typename scalar_t>
void column_sum(const scalar_t* data, int64_t rows, int64_t cols, int64_t row_stride, scalar_t* out) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto tile = TORCH_OPS_CPU_KERNEL(linear_column_sum_tile<scalar_t>);
  constexpr int64_t kMinWorkPerTask = 1 << 15;  // elements: below this a thread costs more than it saves
  constexpr int64_t kMaxRowChunks = 32;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t by_work = std::max<int64_t>(1, rows * cols / kMinWorkPerTask);
  int64_t R = 1, C = 1;
  if (rows >= cols) {
    R = std::max<int64_t>(1, std::min({kMaxRowChunks, by_work, ceil_div(rows, kSumBlockRows)}));
  } else {
    C = std::max<int64_t>(1, std::min({threads, by_work, ceil_div(cols, 64)}));
  }
  const int64_t rows_per = ceil_div(rows, R), cols_per = ceil_div(cols, C);
  std::vector<opmath_t> partial(static_cast<size_t>(R * cols));
  at::parallel_for(0, R * C, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / C, c = t % C;
      const int64_t r0 = r * rows_per, r1 = std::min(rows, r0 + rows_per);
      const int64_t c0 = c * cols_per, c1 = std::min(cols, c0 + cols_per);
      if (r0 < r1 && c0 < c1) tile(data, row_stride, r0, r1, c0, c1, partial.data() + r * cols + c0);
      else if (c0 < c1) std::fill(partial.begin() + r * cols + c0, partial.begin() + r * cols + c1, opmath_t(0));
    }
  });
  for (int64_t j = 0; j < cols; ++j) {
    opmath_t s = partial[j];
    for (int64_t r = 1; r < R; ++r) s += partial[r * cols + j];
    out[j] = static_cast<scalar_t>(s);
  }
}

}  // namespace

at::Tensor grad_bias_cpu(const at::Tensor& grad_output) {
  const auto g = grad_bias_input_2d(grad_output);
  const int64_t rows = g.size(0), cols = g.size(1);
  auto out = at::empty({cols}, g.options());
  if (cols == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "torch_ops.linear_grad_bias", [&] {
    column_sum<scalar_t>(g.const_data_ptr<scalar_t>(), rows, cols, g.stride(0), out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) {
  m.impl("linear", &forward);
  m.impl("linear_grad_weight", &grad_weight);
  m.impl("linear_grad_bias", &grad_bias_cpu);
}

}  // namespace torch_ops::linear
