// The softmax family: device-generic host code. Checks every argument, makes the reduced
// dimension the last one (contiguous: a transposed copy when it is not already last) and
// hands Rows / CrossEntropy jobs to the device's launcher (csrc/cpu/softmax.cpp,
// cuda/softmax.cu). The GEMMs of linear_cross_entropy go to the backend's BLAS through
// at::mm / at::addmm; the softmax and cross-entropy math is ours (torch_ops/softmax_math.h).
#include <ATen/ATen.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/core/Reduction.h>
#include <torch/library.h>

#include <limits>

#include "torch_ops/alloc.h"
#include "torch_ops/checks.h"
#include "torch_ops/ops.h"
#include "torch_ops/softmax.h"

namespace torch_ops::softmax {

namespace {

// The accumulation dtype of the statistics: float, or double for float64 inputs.
at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// ------------------------------------------------------------------------------ softmax

at::Tensor rows_op(const char* op, RowOp rop, const at::Tensor& a, const char* a_name, const at::Tensor* b,
                   const char* b_name, int64_t dim) {
  check_defined(a, op, a_name);
  check_floating(a, op, a_name);
  if (b) {
    check_defined(*b, op, b_name);
    check_floating(*b, op, b_name);
    check_same_dtype(a, a_name, *b, b_name, op);
    check_same_device(a, a_name, *b, b_name, op);
    TORCH_CHECK(a.sizes() == b->sizes(), "torch_ops.", op, ": expected ", b_name, " to have the shape of ", a_name,
                " ", a.sizes(), ", got ", b->sizes());
  }
  const int64_t ndim = a.dim();
  const int64_t d = at::maybe_wrap_dim(dim, ndim);  // a 0-D tensor takes dim 0 or -1
  if (a.numel() == 0) return at::empty(a.sizes(), a.options());
  const int64_t cols = ndim == 0 ? 1 : a.size(d);
  const bool last = ndim == 0 || d == ndim - 1;
  const auto move = [&](const at::Tensor& t) { return last ? t.contiguous() : t.movedim(d, -1).contiguous(); };
  const at::Tensor A = move(a);
  const at::Tensor B = b ? move(*b) : at::Tensor();
  auto out = empty_output(A.sizes(), A.options());  // huge pages when large (torch_ops/alloc.h)
  Rows job{rop, a.scalar_type(), A.numel() / cols, cols, out.mutable_data_ptr(),
           {A.const_data_ptr(), b ? B.const_data_ptr() : nullptr}};
  job.device_index = a.device().index();
  launchers_for(a, &Launchers::rows, op).rows(job);
  return last ? out : out.movedim(-1, d).contiguous();
}

// -------------------------------------------------------------------------- cross-entropy

// The arguments of cross_entropy, checked as PyTorch checks them and flattened to
// (rows, classes) logits with the classes last.
struct Ce {
  at::Tensor logits;  // (rows, classes), contiguous
  at::Tensor target;  // int64 (rows) or probabilities (rows, classes), contiguous
  at::Tensor weight;  // (classes) of the input's dtype, or undefined
  bool prob = false;
  int64_t classes = 0, rows = 0, class_dim = 0;
  std::vector<int64_t> none_shape;  // the shape of the unreduced loss
};

// (N, C, d1, ..., dK) -> (N * d1 * ... * dK, C); (C) -> (1, C); (N, C) as is.
// (The rows are counted, not reshape(-1, C)'d: C may be 0.)
at::Tensor classes_last(const at::Tensor& t, int64_t class_dim) {
  const int64_t C = t.size(class_dim);
  int64_t rows = 1;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (d != class_dim) rows *= t.size(d);
  if (t.dim() <= 2) return t.reshape({rows, C}).contiguous();
  return t.movedim(class_dim, -1).reshape({rows, C}).contiguous();
}

// Class indices in [0, classes) or equal to ignore_index; else IndexError, as PyTorch's CPU
// kernels (checked here on every device, before any kernel runs: no device-side assert).
void check_target_range(const at::Tensor& target, int64_t classes, int64_t ignore_index) {
  if (target.numel() == 0) return;
  const auto bad = at::logical_and(target != ignore_index, at::logical_or(target < 0, target >= classes));
  if (bad.any().item<bool>()) {
    const int64_t value = target.masked_select(bad).flatten()[0].item<int64_t>();
    TORCH_CHECK_INDEX(false, "Target ", value, " is out of bounds.");
  }
}

Ce prepare_ce(const char* op, const at::Tensor& input, const at::Tensor& target,
              const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
              double label_smoothing, bool check_range = true) {
  check_defined(input, op, "input");
  check_defined(target, op, "target");
  check_floating(input, op, "input");
  check_same_device(input, "input", target, "target", op);
  TORCH_CHECK(input.dim() >= 1, "torch_ops.", op, ": expected input to have at least 1 dimension (the classes), got 0-D");
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "torch_ops.", op, ": expected reduction to be 0 (none), 1 (mean) or ",
              "2 (sum), got ", reduction);
  TORCH_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "label_smoothing must be between 0.0 and 1.0. Got: ", label_smoothing);
  Ce ce;
  ce.class_dim = input.dim() == 1 ? 0 : 1;
  ce.classes = input.size(ce.class_dim);
  if (weight.has_value() && weight->defined()) {
    TORCH_CHECK(weight->dim() == 1 && weight->numel() == ce.classes, "cross_entropy: weight tensor should be defined ",
                "either for all ", ce.classes, " classes or no classes but got weight tensor of shape: ",
                weight->sizes());
    check_floating(*weight, op, "weight");
    check_same_device(input, "input", *weight, "weight", op);
    ce.weight = weight->to(input.scalar_type()).contiguous();
  }
  ce.prob = input.sizes() == target.sizes();
  if (ce.prob) {
    // Same shape as the input: class probabilities (PyTorch's rule).
    TORCH_CHECK(at::isFloatingType(target.scalar_type()),
                "Expected floating point type for target with class probabilities, got ", target.scalar_type());
    TORCH_CHECK(ignore_index < 0, "ignore_index is not supported for floating point target");
    ce.logits = classes_last(input, ce.class_dim);
    ce.target = classes_last(target.to(input.scalar_type()), ce.class_dim);
    ce.none_shape.assign(input.sizes().begin(), input.sizes().end());
    ce.none_shape.erase(ce.none_shape.begin() + ce.class_dim);
  } else {
    TORCH_CHECK(target.scalar_type() == at::kLong, "expected scalar type Long but found ", target.scalar_type());
    if (input.dim() == 1) {
      TORCH_CHECK(target.dim() == 0, "torch_ops.", op, ": expected target to be 0-D for a 1-D input (one sample of ",
                  input.size(0), " classes), got shape ", target.sizes());
    } else if (input.dim() == 2) {
      TORCH_CHECK(target.dim() <= 1, "0D or 1D target tensor expected, multi-target not supported");
      TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == input.size(0), "Expected input batch_size (",
                        input.size(0), ") to match target batch_size (", target.dim() == 1 ? target.size(0) : 1,
                        ").");
    } else {
      std::vector<int64_t> expected(input.sizes().begin(), input.sizes().end());
      expected.erase(expected.begin() + 1);
      TORCH_CHECK(target.sizes() == at::IntArrayRef(expected), "Expected target size ", at::IntArrayRef(expected),
                  ", got ", target.sizes());
    }
    ce.logits = classes_last(input, ce.class_dim);
    ce.target = target.reshape({-1}).contiguous();
    ce.none_shape.assign(target.sizes().begin(), target.sizes().end());
    if (check_range) check_target_range(ce.target, ce.classes, ignore_index);
  }
  ce.rows = ce.logits.size(0);
  return ce;
}

// The forward statistics of rows with no class (C = 0: every class-index target is ignored,
// probability rows are empty), without the kernel (which would read the absent targets):
// what PyTorch's composition gives. The loss of a row is 0, or nan for class indices with
// label smoothing (PyTorch's eps / C is inf, times 0); its weight 0, so a mean is 0 / 0 = nan
// (PyTorch divides by the total weight, or for probabilities by numel / C).
void no_class_rows(const at::Tensor& row_max, const at::Tensor& log_sum, const at::Tensor& loss,
                   const at::Tensor& row_weight, bool prob, double label_smoothing) {
  row_max.fill_(-std::numeric_limits<double>::infinity());
  log_sum.fill_(-std::numeric_limits<double>::infinity());  // log 0
  loss.fill_(!prob && label_smoothing > 0 ? std::numeric_limits<double>::quiet_NaN() : 0.0);
  row_weight.zero_();
}

CrossEntropy ce_job(CePass pass, const Ce& ce, int64_t ignore_index, double label_smoothing) {
  CrossEntropy job{};
  job.pass = pass;
  job.dtype = ce.logits.scalar_type();
  job.rows = ce.rows;
  job.classes = ce.classes;
  job.logits = ce.logits.const_data_ptr();
  job.target = ce.prob ? nullptr : ce.target.const_data_ptr<int64_t>();
  job.target_prob = ce.prob ? ce.target.const_data_ptr() : nullptr;
  job.weight = ce.weight.defined() ? ce.weight.const_data_ptr() : nullptr;
  job.ignore_index = ignore_index;
  job.label_smoothing = label_smoothing;
  job.device_index = ce.logits.device().index();
  return job;
}

}  // namespace

namespace {
// F.softmax's dtype: the input cast to it first (before the checks: an integer input with a
// floating dtype is fine).
at::Tensor cast_to(const at::Tensor& input, std::optional<at::ScalarType> dtype) {
  return dtype.has_value() && input.defined() && input.scalar_type() != *dtype ? input.to(*dtype) : input;
}
}  // namespace

at::Tensor softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  return rows_op("softmax", RowOp::Softmax, cast_to(input, dtype), "input", nullptr, nullptr, dim);
}
at::Tensor log_softmax(const at::Tensor& input, int64_t dim, std::optional<at::ScalarType> dtype) {
  return rows_op("log_softmax", RowOp::LogSoftmax, cast_to(input, dtype), "input", nullptr, nullptr, dim);
}
at::Tensor softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  return rows_op("softmax_backward", RowOp::SoftmaxBackward, grad_output, "grad_output", &output, "output", dim);
}
at::Tensor log_softmax_backward(const at::Tensor& grad_output, const at::Tensor& output, int64_t dim) {
  return rows_op("log_softmax_backward", RowOp::LogSoftmaxBackward, grad_output, "grad_output", &output, "output",
                 dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cross_entropy_forward(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    int64_t ignore_index, double label_smoothing) {
  constexpr const char* op = "cross_entropy";
  const Ce ce = prepare_ce(op, input, target, weight, reduction, ignore_index, label_smoothing);
  const auto acc = input.options().dtype(acc_type(input.scalar_type()));
  // The log-sum-exp of each row as row_max + log_sum (torch_ops/softmax_math.h, Lse).
  auto row_max = at::empty({ce.rows}, acc);
  auto log_sum = at::empty({ce.rows}, acc);
  auto loss_rows = at::empty({ce.rows}, acc);
  auto row_weight = at::empty({ce.rows}, acc);
  if (ce.rows > 0 && ce.classes == 0) {
    no_class_rows(row_max, log_sum, loss_rows, row_weight, ce.prob, label_smoothing);
  } else if (ce.rows > 0) {
    CrossEntropy job = ce_job(CePass::Forward, ce, ignore_index, label_smoothing);
    job.row_max = row_max.mutable_data_ptr();
    job.log_sum = log_sum.mutable_data_ptr();
    job.loss = loss_rows.mutable_data_ptr();
    job.row_weight = row_weight.mutable_data_ptr();
    launchers_for(input, &Launchers::cross_entropy, op).cross_entropy(job);
  }
  if (reduction == at::Reduction::None)
    return {loss_rows.to(input.scalar_type()).view(ce.none_shape), row_max, log_sum, at::empty({0}, acc)};
  const auto total = loss_rows.sum();
  if (reduction == at::Reduction::Sum) return {total.to(input.scalar_type()), row_max, log_sum, at::empty({0}, acc)};
  const auto total_weight = row_weight.sum();  // 0 when every target is ignored: 0 / 0 = nan, as PyTorch
  return {(total / total_weight).to(input.scalar_type()), row_max, log_sum, total_weight};
}

at::Tensor cross_entropy(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                         int64_t reduction, int64_t ignore_index, double label_smoothing) {
  return std::get<0>(cross_entropy_forward(input, target, weight, reduction, ignore_index, label_smoothing));
}

at::Tensor cross_entropy_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target,
                                  const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                  double label_smoothing, const at::Tensor& row_max, const at::Tensor& log_sum,
                                  const at::Tensor& total_weight) {
  constexpr const char* op = "cross_entropy_backward";
  const Ce ce = prepare_ce(op, input, target, weight, reduction, ignore_index, label_smoothing, false);
  check_defined(grad_output, op, "grad_output");
  check_same_device(input, "input", grad_output, "grad_output", op);
  const auto acc_t = acc_type(input.scalar_type());
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&row_max, "row_max"}, {&log_sum, "log_sum"}}) {
    check_defined(*t, op, name);
    check_same_device(input, "input", *t, name, op);
    TORCH_CHECK(t->dim() == 1 && t->size(0) == ce.rows && t->scalar_type() == acc_t, "torch_ops.", op, ": expected ",
                name, " to be the (", ce.rows, ",) ", acc_t, " tensor of cross_entropy_forward, got ", t->sizes(), " ",
                t->scalar_type());
  }
  at::Tensor scale;
  if (reduction == at::Reduction::None) {
    TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(ce.none_shape), "torch_ops.", op,
                ": expected grad_output to have the shape of the loss ", at::IntArrayRef(ce.none_shape), ", got ",
                grad_output.sizes());
    scale = grad_output.to(acc_t).reshape({-1}).contiguous();
  } else {
    TORCH_CHECK(grad_output.numel() == 1, "torch_ops.", op, ": expected a one-element grad_output, got shape ",
                grad_output.sizes());
    auto g = grad_output.to(acc_t).reshape({});
    if (reduction == at::Reduction::Mean) {
      TORCH_CHECK(total_weight.numel() == 1, "torch_ops.", op, ": expected total_weight from cross_entropy_forward");
      g = g / total_weight.to(acc_t).reshape({});
    }
    scale = g.expand({ce.rows}).contiguous();
  }
  auto grad = empty_output({ce.rows, ce.classes}, ce.logits.options());
  if (ce.rows > 0 && ce.classes > 0) {
    const auto m = row_max.contiguous(), l = log_sum.contiguous();  // (kept alive for the kernel)
    CrossEntropy job = ce_job(CePass::Backward, ce, ignore_index, label_smoothing);
    job.row_max = const_cast<void*>(m.const_data_ptr());
    job.log_sum = const_cast<void*>(l.const_data_ptr());
    job.scale = scale.const_data_ptr();
    job.grad = grad.mutable_data_ptr();
    launchers_for(input, &Launchers::cross_entropy, op).cross_entropy(job);
  }
  if (input.dim() <= 2) return grad.view(input.sizes());
  std::vector<int64_t> moved(input.sizes().begin(), input.sizes().end());
  moved.erase(moved.begin() + 1);
  moved.push_back(ce.classes);
  return grad.view(moved).movedim(-1, 1).contiguous();
}

at::Tensor cross_entropy_target_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                         int64_t reduction, double label_smoothing) {
  const int64_t class_dim = input.dim() == 1 ? 0 : 1;
  const int64_t C = input.size(class_dim);
  auto g = ops::log_softmax(input, class_dim) * (label_smoothing - 1.0);  // d loss / d target = -(1 - eps) * logp
  if (weight.has_value() && weight->defined()) {
    std::vector<int64_t> shape(input.dim(), 1);
    shape[class_dim] = C;
    g = g * weight->to(input.scalar_type()).view(shape);
  }
  at::Tensor s = grad_output;
  if (reduction == at::Reduction::None)
    s = grad_output.unsqueeze(class_dim);
  else if (reduction == at::Reduction::Mean)
    s = grad_output / static_cast<double>(C == 0 ? 0 : input.numel() / C);
  return (g * s).to(target.scalar_type());
}

at::Tensor cross_entropy_composite(const at::Tensor& input, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                                   double label_smoothing) {
  const int64_t class_dim = input.dim() == 1 ? 0 : 1;
  const int64_t C = input.size(class_dim);
  const double eps = label_smoothing;
  const auto logp = ops::log_softmax(input, class_dim);
  std::vector<int64_t> bshape(input.dim(), 1);
  bshape[class_dim] = C;
  const bool has_w = weight.has_value() && weight->defined();
  const at::Tensor w = has_w ? weight->to(input.scalar_type()) : at::Tensor();
  if (input.sizes() == target.sizes()) {
    at::Tensor q = eps > 0 ? target * (1.0 - eps) + eps / C : target;
    at::Tensor prod = logp * q;
    if (has_w) prod = prod * w.view(bshape);
    auto loss = -prod.sum(class_dim);
    if (reduction == at::Reduction::None) return loss;
    if (reduction == at::Reduction::Sum) return loss.sum();
    return loss.sum() / static_cast<double>(C == 0 ? 0 : input.numel() / C);
  }
  const auto mask = target != ignore_index;
  const auto safe = at::where(mask, target, at::zeros({}, target.options()));
  auto nll = -logp.gather(class_dim, safe.unsqueeze(class_dim)).squeeze(class_dim);
  auto w_t = has_w ? w.index_select(0, safe.reshape({-1})).view(safe.sizes()) : at::ones_like(nll);
  w_t = w_t * mask;
  auto loss = nll * w_t;
  if (eps > 0) {
    auto lw = has_w ? logp * w.view(bshape) : logp;
    auto smooth = -lw.sum(class_dim) * mask;
    loss = loss * (1.0 - eps) + smooth * (eps / C);
  }
  if (reduction == at::Reduction::None) return loss;
  if (reduction == at::Reduction::Sum) return loss.sum();
  return loss.sum() / w_t.sum();
}

// ------------------------------------------------------------------- linear cross-entropy

int64_t default_chunk_size(int64_t rows, int64_t hidden, int64_t vocab, int64_t element_size) {
  // As many rows as 128 MiB of logits hold (GEMMs of fewer rows run well below the BLAS's
  // peak, and every chunk reads and writes grad_weight once), and at least Liger-Kernel's
  // rule (the chunk's logits about the size of the input); at least 1 row, at most all.
  const int64_t by_memory = (int64_t(128) << 20) / std::max<int64_t>(1, vocab * element_size);
  const int64_t factor = std::max<int64_t>(1, (vocab + hidden - 1) / std::max<int64_t>(hidden, 1));
  int64_t liger = 1;
  while (liger < (rows + factor - 1) / factor) liger *= 2;
  return std::max<int64_t>(1, std::min(std::max(rows, int64_t(1)), std::max(by_memory, liger)));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_cross_entropy_chunked(
    const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& grad_output, int64_t ignore_index, int64_t reduction, double label_smoothing,
    int64_t chunk_size, std::array<bool, 3> mask, std::optional<at::ScalarType> out_dtype) {
  constexpr const char* op = "linear_cross_entropy";
  check_defined(input, op, "input");
  check_defined(weight, op, "weight");
  check_defined(target, op, "target");
  check_min_dim(input, 1, op, "input");
  check_dim(weight, 2, op, "weight");
  check_floating(input, op, "input");
  check_same_dtype(input, "input", weight, "weight", op);
  check_same_device(input, "input", weight, "weight", op);
  check_same_device(input, "input", target, "target", op);
  TORCH_CHECK(input.size(-1) == weight.size(1), "torch_ops.", op, ": expected input.size(-1) to equal ",
              "weight.size(1) = ", weight.size(1), ", got input shape ", input.sizes());
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "torch_ops.", op, ": expected reduction 0, 1 or 2, got ", reduction);
  TORCH_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "label_smoothing must be between 0.0 and 1.0. Got: ", label_smoothing);
  TORCH_CHECK(target.scalar_type() == at::kLong, "expected scalar type Long but found ", target.scalar_type());
  TORCH_CHECK(!out_dtype.has_value() || at::isFloatingType(*out_dtype), "torch_ops.", op,
              ": expected out_dtype to be a floating-point dtype, got ", *out_dtype);
  std::vector<int64_t> lead(input.sizes().begin(), input.sizes().end() - 1);
  TORCH_CHECK_VALUE(target.sizes() == at::IntArrayRef(lead), "torch_ops.", op, ": expected target of shape ",
                    at::IntArrayRef(lead), " (the input's leading dimensions), got ", target.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_dim(*bias, 1, op, "bias");
    check_size(*bias, 0, weight.size(0), op, "bias", "weight.size(0)");
    check_same_dtype(input, "input", *bias, "bias", op);
    check_same_device(input, "input", *bias, "bias", op);
  }
  const int64_t H = weight.size(1), V = weight.size(0);
  const int64_t N = c10::multiply_integers(lead);  // (not reshape(-1, H): H may be 0)
  const auto x = input.reshape({N, H}).contiguous();
  const auto t = target.reshape({N}).contiguous();
  const auto w = weight.contiguous();
  check_target_range(t, V, ignore_index);
  const auto dtype = input.scalar_type();
  const auto acc_t = acc_type(dtype);
  const auto acc = input.options().dtype(acc_t);
  const bool any_grad = mask[0] || mask[1] || mask[2];
  const int64_t chunk = chunk_size > 0 ? std::min<int64_t>(chunk_size, std::max<int64_t>(N, 1))
                                       : default_chunk_size(N, H, V, input.element_size());

  at::Tensor scale;  // per row: the upstream gradient (1 without grad_output)
  if (any_grad && grad_output.has_value() && grad_output->defined()) {
    if (reduction == at::Reduction::None) {
      TORCH_CHECK(grad_output->sizes() == target.sizes(), "torch_ops.", op,
                  ": expected grad_output to have the shape of the loss ", target.sizes(), ", got ",
                  grad_output->sizes());
      scale = grad_output->to(acc_t).reshape({-1}).contiguous();
    } else {
      scale = grad_output->to(acc_t).reshape({}).expand({N}).contiguous();
    }
  }
  auto loss_rows = at::empty({N}, acc);
  auto row_weight = at::empty({N}, acc);
  auto row_max = at::empty({std::max<int64_t>(chunk, 1)}, acc);  // the chunk's log-sum-exp (row_max + log_sum)
  auto log_sum = at::empty({std::max<int64_t>(chunk, 1)}, acc);
  at::Tensor grad_input = mask[0] ? at::empty({N, H}, input.options()) : at::Tensor();
  const bool reduced = dtype == at::kHalf || dtype == at::kBFloat16;
  at::Tensor gw = mask[1] ? at::zeros({V, H}, input.options().dtype(reduced ? at::kFloat : dtype)) : at::Tensor();
  at::Tensor gb = mask[2] ? at::zeros({V}, input.options().dtype(reduced ? at::kFloat : dtype)) : at::Tensor();
  at::Tensor buffer = N > 0 ? empty_output({chunk, V}, input.options()) : at::Tensor();
  at::Tensor buffer_acc;  // the chunk's logit gradients in float, for float16/bfloat16 accumulation
  const auto& launch = launchers_for(input, &Launchers::cross_entropy, op);
  for (int64_t start = 0; start < N; start += chunk) {
    const int64_t n = std::min(chunk, N - start);
    auto buf = buffer.narrow(0, 0, n);
    const auto xc = x.narrow(0, start, n);
    if (has_bias)
      at::addmm_out(buf, *bias, xc, w.t());
    else
      at::mm_out(buf, xc, w.t());
    if (V == 0) {  // no class: every target is ignored; no logit, no gradient of them
      no_class_rows(row_max.narrow(0, 0, n), log_sum.narrow(0, 0, n), loss_rows.narrow(0, start, n),
                    row_weight.narrow(0, start, n), false, label_smoothing);
      if (mask[0]) grad_input.narrow(0, start, n).zero_();
      continue;
    }
    CrossEntropy job{};
    job.pass = CePass::Forward;
    job.dtype = dtype;
    job.rows = n;
    job.classes = V;
    job.logits = buf.const_data_ptr();
    job.target = t.const_data_ptr<int64_t>() + start;
    job.ignore_index = ignore_index;
    job.label_smoothing = label_smoothing;
    job.row_max = row_max.mutable_data_ptr();
    job.log_sum = log_sum.mutable_data_ptr();
    job.loss = loss_rows.narrow(0, start, n).mutable_data_ptr();
    job.row_weight = row_weight.narrow(0, start, n).mutable_data_ptr();
    job.scale = scale.defined() ? scale.narrow(0, start, n).const_data_ptr() : nullptr;
    job.grad = any_grad ? buf.mutable_data_ptr() : nullptr;  // in place: the logits become their gradient
    job.device_index = input.device().index();
    launch.cross_entropy(job);
    if (mask[0]) {
      auto gi = grad_input.narrow(0, start, n);
      at::mm_out(gi, buf, w);
    }
    if (mask[1]) {
      if (reduced) {
        gw.addmm_(buf.t().to(at::kFloat), xc.to(at::kFloat));
      } else {
        gw.addmm_(buf.t(), xc);
      }
    }
    if (mask[2]) gb.add_(ops::linear_grad_bias(buf));
  }
  at::Tensor loss;
  at::Tensor total_weight;
  const auto loss_dtype = out_dtype.value_or(dtype);
  if (reduction == at::Reduction::None) {
    loss = loss_rows.to(loss_dtype).view(target.sizes());
  } else {
    const auto total = loss_rows.sum();
    if (reduction == at::Reduction::Sum) {
      loss = total.to(loss_dtype);
    } else {
      total_weight = row_weight.sum();
      loss = (total / total_weight).to(loss_dtype);
    }
  }
  if (any_grad && reduction == at::Reduction::Mean) {
    // A total weight of 0: every target ignored, every gradient 0 (as PyTorch's), not 0 / 0.
    const auto divisor = at::where(total_weight == 0, at::ones_like(total_weight), total_weight);
    if (mask[0]) grad_input.div_(divisor);
    if (mask[1]) gw.div_(divisor);
    if (mask[2]) gb.div_(divisor);
  }
  if (mask[0]) grad_input = grad_input.view(input.sizes());
  if (mask[1] && reduced) gw = gw.to(dtype);
  if (mask[2] && reduced) gb = gb.to(dtype);
  // The gradients not asked for are empty tensors (an op returns defined tensors).
  const auto none = [&](const at::Tensor& t) { return t.defined() ? t : at::empty({0}, input.options()); };
  return {loss, none(grad_input), none(gw), none(gb)};
}

at::Tensor linear_cross_entropy(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                const std::optional<at::Tensor>& bias, int64_t ignore_index, int64_t reduction,
                                double label_smoothing, std::optional<int64_t> chunk_size,
                                std::optional<at::ScalarType> out_dtype) {
  return std::get<0>(linear_cross_entropy_chunked(input, weight, target, bias, std::nullopt, ignore_index, reduction,
                                                  label_smoothing, chunk_size.value_or(0), {false, false, false},
                                                  out_dtype));
}

at::Tensor linear_cross_entropy_composite(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& target,
                                          const std::optional<at::Tensor>& bias, int64_t ignore_index,
                                          int64_t reduction, double label_smoothing,
                                          std::optional<at::ScalarType> out_dtype) {
  const auto logits = ops::linear(input, weight, bias);
  const int64_t V = weight.size(0);
  // (float32 logits for a float32 loss: the chunked op's loss of reduced-precision logits
  // is accumulated in float32 too.)
  const auto l = out_dtype.has_value() ? logits.to(*out_dtype) : logits;
  return ops::cross_entropy(l.reshape({-1, V}), target.reshape({-1}), std::nullopt, reduction, ignore_index,
                            label_smoothing)
      .view(reduction == at::Reduction::None ? target.sizes() : at::IntArrayRef{});
}

void register_kernels(torch::Library& m) {
  m.impl("softmax", &softmax);
  m.impl("log_softmax", &log_softmax);
  m.impl("softmax_backward", &softmax_backward);
  m.impl("log_softmax_backward", &log_softmax_backward);
  m.impl("cross_entropy", &cross_entropy);
  m.impl("cross_entropy_forward", &cross_entropy_forward);
  m.impl("cross_entropy_backward", &cross_entropy_backward);
  m.impl("linear_cross_entropy", &linear_cross_entropy);
  m.impl("linear_cross_entropy_chunked", &linear_cross_entropy_chunked);
}

}  // namespace torch_ops::softmax
