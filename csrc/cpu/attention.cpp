// The attention family on CPU: the registrations, the launchers that hand the host code's
// jobs to the tiled kernels (csrc/cpu/kernels/attention.h, compiled per instruction set),
// and the GEMM those kernels call on their tiles: ATen's CPU matmul kernel (MKL / BLAS)
// called directly (at::cpu::addmm_out: no dispatcher, no autograd, no allocation) on
// views of the kernel's buffers.
#include <ATen/Dispatch.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include "torch_ops/attention.h"

namespace torch_ops::attention {
namespace {

// c (m x n, row stride ldc) = alpha * op(a) op(b) + beta * c; a is (m x k) row-major with
// leading dimension lda, or (k x m) when trans_a; b likewise (k x n), or (n x k) when trans_b.
template <typename acc_t>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, acc_t alpha, const acc_t* a, int64_t lda,
          const acc_t* b, int64_t ldb, acc_t beta, acc_t* c, int64_t ldc) {
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
    TORCH_OPS_CPU_KERNEL(attention_forward<scalar_t>)(job, &gemm<at::opmath_type<scalar_t>>);
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
