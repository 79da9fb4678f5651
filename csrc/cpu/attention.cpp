// The attention family on CPU: the registrations, the launchers that hand the host code's
// jobs to the tiled kernels (csrc/cpu/kernels/attention.h, compiled per instruction set),
// and the GEMM those kernels call on their tiles: the BLAS that PyTorch links (MKL on x86)
// called directly, as ATen's own CPU GEMM does; where that library does not export the
// Fortran sgemm_ / dgemm_, ATen's CPU matmul kernel (at::cpu::addmm_out: no dispatcher, no
// autograd, no allocation) on views of the kernel's buffers.
#include <ATen/Dispatch.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include <climits>
#include <type_traits>

#include "torch_ops/attention.h"

// The Fortran BLAS GEMMs (32-bit integers), weak: resolved from libtorch_cpu's BLAS when it
// exports them, null otherwise (the extension still loads).
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace torch_ops::attention {
namespace {

template <typename acc_t>
using FortranGemm = void (*)(const char*, const char*, const int*, const int*, const int*, const acc_t*,
                             const acc_t*, const int*, const acc_t*, const int*, const acc_t*, acc_t*, const int*);
template <typename acc_t>
FortranGemm<acc_t> fortran_gemm() {
  if constexpr (std::is_same_v<acc_t, float>) {
    return &sgemm_;
  } else {
    return &dgemm_;
  }
}

// Whether the direct BLAS call takes this product: the library is there, every size is
// positive and fits its 32-bit integers, and each leading dimension is valid for BLAS.
bool blas_takes(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  const auto fits = [](int64_t x) { return x >= 1 && x <= INT_MAX; };
  return fits(m) && fits(n) && fits(k) && fits(lda) && fits(ldb) && fits(ldc) && lda >= (trans_a ? m : k) &&
         ldb >= (trans_b ? k : n) && ldc >= n;
}

// c (m x n, row stride ldc) = alpha * op(a) op(b) + beta * c; a is (m x k) row-major with
// leading dimension lda, or (k x m) when trans_a; b likewise (k x n), or (n x k) when trans_b.
template <typename acc_t>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, acc_t alpha, const acc_t* a, int64_t lda,
          const acc_t* b, int64_t ldb, acc_t beta, acc_t* c, int64_t ldc) {
  const FortranGemm<acc_t> blas = fortran_gemm<acc_t>();
  if (blas != nullptr && blas_takes(trans_a, trans_b, m, n, k, lda, ldb, ldc)) {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same buffers,
    // the operands swapped, the transposition flags unchanged.
    const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    const int lda_i = static_cast<int>(lda), ldb_i = static_cast<int>(ldb), ldc_i = static_cast<int>(ldc);
    blas(&tb, &ta, &ni, &mi, &ki, &alpha, b, &ldb_i, a, &lda_i, &beta, c, &ldc_i);
    return;
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const auto view = [&](const acc_t* p, bool trans, int64_t rows, int64_t cols, int64_t ld) {
    auto* q = const_cast<acc_t*>(p);  // read only: the GEMM's inputs
    return trans ? at::from_blob(q, {cols, rows}, {ld, 1}, opts).t() : at::from_blob(q, {rows, cols}, {ld, 1}, opts);
  };
  at::Tensor cm = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  at::cpu::addmm_out(cm, cm, view(a, trans_a, m, k, lda), view(b, trans_b, k, n, ldb), beta, alpha);
}

// The dtype dispatch (and its error messages) stays here, compiled for any CPU.
void forward_cpu(const Forward& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.scaled_dot_product_attention", [&] {
    TORCH_OPS_CPU_KERNEL(attention_forward<scalar_t>)(job);
  });
}
void backward_cpu(const Backward& job) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, job.dtype, "torch_ops.scaled_dot_product_attention", [&] {
    TORCH_OPS_CPU_KERNEL(attention_backward<scalar_t>)(job, &gemm<at::opmath_type<scalar_t>>);
  });
}

[[maybe_unused]] const bool registered = [] {
  launchers(c10::DeviceType::CPU) = Launchers{&forward_cpu, &backward_cpu};
  return true;
}();

}  // namespace

TORCH_LIBRARY_IMPL(torch_ops, CPU, m) { register_kernels(m); }

}  // namespace torch_ops::attention
