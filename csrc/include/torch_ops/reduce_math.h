// Scalar pieces of the reductions, shared by the CPU and the CUDA kernels.
#pragma once

#include <c10/macros/Macros.h>
#include <cstdint>

namespace torch_ops::math {

// Column sums are accumulated in blocks of this many rows: a block's partial sum is
// added to the running total, so rounding error grows with rows/kBlockRows + kBlockRows
// rather than with rows (the cascade summation ATen's reductions use).
constexpr int64_t kSumBlockRows = 64;

// Integer ceil(a / b) for positive b.
C10_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace torch_ops::math
