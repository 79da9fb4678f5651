// The attention family: scaled_dot_product_attention, memory-efficient (FlashAttention-2
// scheme): the L x S score matrix is never materialised in the forward or the backward.
//
// Dispatcher ops (schemas in csrc/ops.cpp):
//   scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, *,
//       scale, enable_gqa, seed)   F.scaled_dot_product_attention's semantics
//       (CompositeImplicitAutograd: broadcasting of the leading dimensions, the bool mask made
//       additive, the default scale; then `attention`)
//   attention(q, k, v, mask, dropout_p, is_causal, scale, seed) -> out
//       q (B, H, L, E), k (B, Hk, S, E), v (B, Hk, S, Ev), H a multiple of Hk (grouped-query
//       attention: query head h reads key/value head h / (H / Hk)); mask additive, 4-D,
//       broadcastable to (B, H, L, S)
//   attention_forward(...) -> (out, lse)    what autograd saves: lse (B, H, L) in the
//       accumulation type (-inf for a row that attends to nothing: its output is 0)
//   attention_backward(grad_out, q, k, v, mask, out, lse, dropout_p, is_causal, scale, seed,
//       output_mask[4]) -> (grad_q, grad_k, grad_v, grad_mask)
//
// The host code (csrc/attention.cpp) is device-generic: checks, contiguous inputs, outputs,
// and Forward / Backward jobs for the device's launcher (csrc/cpu/attention.cpp,
// cuda/attention.cu). The scalar math shared by both (the dropout hash, the masked
// exponent) is torch_ops/attention_math.h; the online softmax is torch_ops/softmax_math.h.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>

#include "torch_ops/cpu_isa.h"
#include "torch_ops/launchers.h"

namespace torch {
class Library;
}

namespace torch_ops::attention {

// One attention problem. q, k, v, out, grads: contiguous, of `dtype`, shapes as above.
// acc_t is float for float16/bfloat16/float, double for double.
struct Problem {
  at::ScalarType dtype;
  int64_t B, H, Hk, L, S, E, Ev;
  double scale;
  bool causal;        // key j is masked for query i when j > i (top-left aligned)
  double dropout_p;   // 0: no dropout; else keep with probability 1 - p, scaled by 1 / (1 - p)
  uint64_t seed;      // the dropout mask is math::dropout_keep(seed, ((b*H + h)*L + i)*S + j, p)
  // Additive mask of acc_t, or nullptr: element (b, h, i, j) at
  // mask[b * mask_sb + h * mask_sh + i * mask_sl + j] (strides may be 0: broadcast).
  const void* mask = nullptr;
  int64_t mask_sb = 0, mask_sh = 0, mask_sl = 0;
  c10::DeviceIndex device_index = -1;
};

struct Forward : Problem {
  const void *q, *k, *v;
  void* out;  // (B, H, L, Ev) dtype
  void* lse;  // (B, H, L) acc_t
};

struct Backward : Problem {
  const void *q, *k, *v, *out, *grad_out;  // dtype
  const void* lse;                         // acc_t (B, H, L)
  void *grad_q, *grad_k, *grad_v;          // dtype, each may be nullptr (not wanted)
  void* grad_mask;                         // acc_t (B, H, L, S) (the score gradient), or nullptr
};

using ForwardLauncher = void (*)(const Forward&);
using BackwardLauncher = void (*)(const Backward&);
struct Launchers {
  ForwardLauncher forward = nullptr;
  BackwardLauncher backward = nullptr;
};
inline Launchers& launchers(c10::DeviceType device) { return device_launchers<Launchers>(device); }

// Registers the host code below for the backend whose TORCH_LIBRARY_IMPL calls it.
void register_kernels(torch::Library& m);

std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                     const std::optional<at::Tensor>& mask, double dropout_p,
                                                     bool is_causal, double scale,
                                                     const std::optional<at::Tensor>& seed);
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<at::Tensor>& mask, double dropout_p, bool is_causal, double scale,
                     const std::optional<at::Tensor>& seed);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const at::Tensor& out, const at::Tensor& lse, double dropout_p,
    bool is_causal, double scale, const std::optional<at::Tensor>& seed, std::array<bool, 4> output_mask);
// The same gradient with differentiable ops (the scores materialised; torch_ops.softmax):
// what the double backward differentiates.
std::array<at::Tensor, 4> attention_backward_composite(const at::Tensor& grad_out, const at::Tensor& q,
                                                       const at::Tensor& k, const at::Tensor& v,
                                                       const at::Tensor& mask, double dropout_p, bool is_causal,
                                                       double scale, const std::optional<at::Tensor>& seed,
                                                       std::array<bool, 4> output_mask);
// The dropout keep-mask scaled by 1 / (1 - p), (B, H, L, S) of dtype (tests, composite).
at::Tensor attention_dropout_mask(const at::Tensor& q, int64_t S, double dropout_p,
                                  const std::optional<at::Tensor>& seed);
at::Tensor scaled_dot_product_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                        bool is_causal, std::optional<double> scale, bool enable_gqa,
                                        const std::optional<at::Tensor>& seed);

}  // namespace torch_ops::attention

// The CPU kernels (csrc/cpu/kernels/attention.h, one variant per instruction set).
TORCH_OPS_DECLARE_CPU_KERNEL(
    template <typename scalar_t> void attention_forward(const torch_ops::attention::Forward& job);
    template <typename scalar_t> void attention_backward(const torch_ops::attention::Backward& job);)
