// linear's vectorised CPU kernels, compiled once per instruction set (csrc/cpu/isa_*.cpp,
// namespace torch_ops::cpu::TORCH_OPS_ISA); declared in torch_ops/linear.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

#include "torch_ops/reduce_math.h"

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

using math::ceil_div;
using math::kSumBlockRows;

// Two opmath vectors from 2 * Vectorized<opmath_t>::size() elements of `p`.
template <typename scalar_t, typename Vec = at::vec::Vectorized<at::opmath_type<scalar_t>>>
inline void load2(const scalar_t* p, Vec& a, Vec& b) {
  if constexpr (at::vec::is_reduced_floating_point_v<scalar_t>) {
    at::vec::load_to_float<scalar_t>(p, a, b);  // bf16/half -> two float vectors
  } else {
    a = Vec::loadu(p);
    b = Vec::loadu(p + Vec::size());
  }
}

// acc[j - c0] = sum over rows [r0, r1) of data[i * row_stride + j], for j in [c0, c1).
// Column tiles of kPairs * 2 vectors stay in registers while the rows stream past; every
// kSumBlockRows rows the block sum is added to the tile's total (cascade summation).
template <typename scalar_t>
void column_sum_tile(const scalar_t* data, int64_t row_stride, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                     at::opmath_type<scalar_t>* acc) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t kPairs = 2;
  constexpr int64_t kWidth = kPairs * 2 * Vec::size();
  int64_t j = c0;
  for (; j + kWidth <= c1; j += kWidth) {
    Vec total[2 * kPairs];
    for (auto& v : total) v = Vec(opmath_t(0));
    for (int64_t rb = r0; rb < r1; rb += kSumBlockRows) {
      Vec block[2 * kPairs];
      for (auto& v : block) v = Vec(opmath_t(0));
      const int64_t re = std::min(rb + kSumBlockRows, r1);
      for (int64_t i = rb; i < re; ++i) {
        const scalar_t* row = data + i * row_stride + j;
        for (int64_t p = 0; p < kPairs; ++p) {
          Vec a, b;
          load2(row + p * 2 * Vec::size(), a, b);
          block[2 * p] += a;
          block[2 * p + 1] += b;
        }
      }
      for (int64_t k = 0; k < 2 * kPairs; ++k) total[k] += block[k];
    }
    for (int64_t k = 0; k < 2 * kPairs; ++k) total[k].store(acc + (j - c0) + k * Vec::size());
  }
  for (; j < c1; ++j) {  // the last columns, fewer than a tile
    opmath_t total = 0;
    for (int64_t rb = r0; rb < r1; rb += kSumBlockRows) {
      opmath_t block = 0;
      const int64_t re = std::min(rb + kSumBlockRows, r1);
      for (int64_t i = rb; i < re; ++i) block += static_cast<opmath_t>(data[i * row_stride + j]);
      total += block;
    }
    acc[j - c0] = total;
  }
}

// out[j] = sum_i data[i * row_stride + j]. The work is cut into R row chunks x C column
// chunks, one task each; a tall matrix is cut by rows (partial sums per chunk, added at
// the end), a wide one by columns.
template <typename scalar_t>
void column_sum(const scalar_t* data, int64_t rows, int64_t cols, int64_t row_stride, scalar_t* out) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t kMinWorkPerTask = 1 << 15;  // elements: below this a thread costs more than it saves
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t tasks = std::max<int64_t>(1, std::min(threads, rows * cols / kMinWorkPerTask));
  int64_t R = 1, C = 1;
  if (rows >= cols) {
    R = std::max<int64_t>(1, std::min(tasks, ceil_div(rows, kSumBlockRows)));
  } else {
    C = std::min(tasks, ceil_div(cols, 64));
  }
  const int64_t rows_per = ceil_div(rows, R), cols_per = ceil_div(cols, C);
  std::vector<opmath_t> partial(static_cast<size_t>(R * cols));
  at::parallel_for(0, R * C, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / C, c = t % C;
      const int64_t r0 = r * rows_per, r1 = std::min(rows, r0 + rows_per);
      const int64_t c0 = c * cols_per, c1 = std::min(cols, c0 + cols_per);
      if (r0 < r1 && c0 < c1) column_sum_tile(data, row_stride, r0, r1, c0, c1, partial.data() + r * cols + c0);
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

void linear_column_sum(at::ScalarType dtype, const void* data, int64_t rows, int64_t cols, int64_t row_stride,
                       void* out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "torch_ops.linear_grad_bias", [&] {
    column_sum<scalar_t>(static_cast<const scalar_t*>(data), rows, cols, row_stride, static_cast<scalar_t*>(out));
  });
}

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
