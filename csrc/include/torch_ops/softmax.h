// The softmax family: softmax, log_softmax, cross_entropy and linear_cross_entropy.
//
// Dispatcher ops (schemas in csrc/ops.cpp):
//   softmax(input, dim, dtype), log_softmax(input, dim, dtype)   dtype: cast the input first
//   softmax_backward(grad_output, output, dim)      = output * (grad - sum(grad * output))
//   log_softmax_backward(grad_output, output, dim)  = grad - exp(output) * sum(grad)
//   cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing)
//   cross_entropy_forward(...) -> (loss, row_max, log_sum, total_weight)   what autograd saves
//   cross_entropy_backward(grad_output, input, target, weight, reduction, ignore_index,
//                          label_smoothing, row_max, log_sum, total_weight) -> grad_input (one pass)
//   cross_entropy_target_backward(...)  the gradient of probability targets (composite)
//   linear_cross_entropy(input, weight, target, bias, ignore_index, reduction,
//                        label_smoothing, chunk_size, out_dtype)   out_dtype: the loss's
//   linear_cross_entropy_chunked(...) -> (loss, grad_input, grad_weight, grad_bias): rows
//                        in chunks, logits of one chunk at a time, gradients accumulated
//
// The host code (csrc/softmax.cpp) is device-generic: it checks, reshapes (the reduced
// dimension is made the last one, contiguous) and hands Rows / CrossEntropy jobs to the
// device's launcher (csrc/cpu/softmax.cpp, cuda/softmax.cu). The scalar math (the online
// max / sum update, the loss and gradient of one row) is torch_ops/softmax_math.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <optional>
#include <tuple>
#include <vector>

#include "torch_ops/cpu_isa.h"
#include "torch_ops/launchers.h"

namespace torch {
class Library;
}

namespace torch_ops::softmax {

// Row-wise passes over (rows, cols), every pointer contiguous, one dtype.
enum class RowOp : int {
  Softmax,             // out = softmax(in[0])
  LogSoftmax,          // out = log_softmax(in[0])
  SoftmaxBackward,     // out = in[1] * (in[0] - sum(in[0] * in[1]))      in = (grad, output)
  LogSoftmaxBackward,  // out = in[0] - exp(in[1]) * sum(in[0])          in = (grad, output)
};

struct Rows {
  RowOp op;
  at::ScalarType dtype;
  int64_t rows, cols;
  void* out;
  const void* in[2];
  c10::DeviceIndex device_index = -1;
};

// Cross-entropy over logits (rows, classes), contiguous, of `dtype`. The statistics are
// in the accumulation type acc_t (float for float16/bfloat16/float, double for double).
//
// Forward (grad == nullptr or not): per row the log-sum-exp of logits[r] as row_max[r] and
//   log_sum[r] (logsumexp = row_max + log_sum; torch_ops/softmax_math.h, Lse),
//   loss[r] (unreduced, weighted; 0 for an ignored row) and row_weight[r] (the weight of
//   the target class, 0 when ignored; 1 for probability targets).
// With grad != nullptr (it may equal logits: in place), also
//   grad[r, c] = scale[r] * d loss[r] / d logits[r, c]       (scale == nullptr: 1)
// Backward (Pass::Backward): row_max / log_sum are read, not written; grad is written, loss unused.
enum class CePass : int { Forward, Backward };

struct CrossEntropy {
  CePass pass;
  at::ScalarType dtype;
  int64_t rows, classes;
  const void* logits;
  const int64_t* target;     // class indices (rows), or nullptr
  const void* target_prob;   // class probabilities (rows, classes) of dtype, or nullptr
  const void* weight;        // class weights (classes) of dtype, or nullptr
  int64_t ignore_index;
  double label_smoothing;
  void* row_max;             // acc_t (rows)
  void* log_sum;             // acc_t (rows)
  void* loss;                // acc_t (rows), forward
  void* row_weight;          // acc_t (rows), forward
  const void* scale;         // acc_t (rows) or nullptr
  void* grad;                // dtype (rows, classes) or nullptr
  c10::DeviceIndex device_index = -1;
};

using RowsLauncher = void (*)(const Rows&);
using CrossEntropyLauncher = void (*)(const CrossEntropy&);

struct Launchers {
  RowsLauncher rows = nullptr;
  CrossEntropyLauncher cross_entropy = nullptr;
};
inline Launchers& launchers(c10::DeviceType device) { return device_launchers<Launchers>(device); }

// Registers the host code below for the backend whose TORCH_LIBRARY_IMPL calls it.
void register_kernels(torch::Library& m);

at::Tensor softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype);
at::Tensor log_softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype);
at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim);
at::Tensor log_softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim);

// reduction: 0 none, 1 mean, 2 sum (at::Reduction).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_entropy_forward(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    int64_t ignore_index, double label_smoothing);
at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                         int64_t reduction, int64_t ignore_index, double label_smoothing);
at::Tensor cross_entropy_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target,
                                  const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                  double label_smoothing, const at::Tensor& row_max, const at::Tensor& log_sum,
                                  const at::Tensor& total_weight);
// CompositeImplicitAutograd: d loss / d target for probability targets, times grad_output.
at::Tensor cross_entropy_target_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                         int64_t reduction, double label_smoothing);
// cross_entropy written with differentiable ops (log_softmax and ATen's elementwise ops and
// sums): what the double backward differentiates. Same arguments as cross_entropy.
at::Tensor cross_entropy_composite(const at::Tensor& input, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                   double label_smoothing);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_cross_entropy_chunked(
    const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& grad_output, int64_t ignore_index, int64_t reduction, double label_smoothing,
    int64_t chunk_size, std::array<bool, 3> output_mask, std::optional<at::ScalarType> out_dtype);
at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                const std::optional<at::Tensor>& bias, int64_t ignore_index, int64_t reduction,
                                double label_smoothing, std::optional<int64_t> chunk_size,
                                std::optional<at::ScalarType> out_dtype);
// linear_cross_entropy written with linear and cross_entropy (double backward).
at::Tensor linear_cross_entropy_composite(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                          const std::optional<at::Tensor>& bias, int64_t ignore_index,
                                          int64_t reduction, double label_smoothing,
                                          std::optional<at::ScalarType> out_dtype);
// The default rows per chunk of linear_cross_entropy: about 128 MiB of logits (see
// csrc/softmax.cpp).
int64_t default_chunk_size(int64_t rows, int64_t hidden, int64_t vocab, int64_t element_size);

}  // namespace torch_ops::softmax

// The CPU kernels (csrc/cpu/kernels/softmax.h, one variant per instruction set).
TORCH_OPS_DECLARE_CPU_KERNEL(template <typename scalar_t> void softmax_rows(const torch_ops::softmax::Rows& job);
                             template <typename scalar_t> void softmax_cross_entropy(
                                 const torch_ops::softmax::CrossEntropy& job);)
