// linear's vectorised CPU kernel, compiled once per instruction set (csrc/cpu/isa_*.cpp,
// namespace torch_ops::cpu::TORCH_OPS_ISA) and declared in torch_ops/linear.h. Raw
// pointers and vector loops only: the dtype dispatch, the partition into threads and the
// scratch memory are in csrc/cpu/linear.cpp.

namespace torch_ops::cpu::TORCH_OPS_ISA {
namespace {

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

}  // namespace

// acc[j - c0] = sum over rows [r0, r1) of data[i * row_stride + j], for j in [c0, c1).
// Column tiles of kPairs * 2 vectors stay in registers while the rows stream past; every
// kSumBlockRows rows the block sum is added to the tile's total (cascade summation).
template <typename scalar_t>
void linear_column_sum_tile(const scalar_t* data, int64_t row_stride, int64_t r0, int64_t r1, int64_t c0,
                            int64_t c1, at::opmath_type<scalar_t>* acc) {
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

template void linear_column_sum_tile<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, double*);
template void linear_column_sum_tile<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
template void linear_column_sum_tile<c10::BFloat16>(const c10::BFloat16*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                                    float*);
template void linear_column_sum_tile<c10::Half>(const c10::Half*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);

}  // namespace torch_ops::cpu::TORCH_OPS_ISA
