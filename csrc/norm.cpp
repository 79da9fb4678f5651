// normalization: device-generic host code. Checks every argument, makes the inputs
// contiguous (a non-contiguous input is copied once; outputs are always contiguous),
// allocates outputs and scratch, and hands a Forward / Backward job to the device's
// launcher (csrc/cpu/norm.cpp, cuda/norm.cu). Also the differentiable composite form of
// the backward that the double backward differentiates (csrc/autograd/norm.cpp).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <limits>
#include <string>

#include "torch_ops/alloc.h"
#include "torch_ops/checks.h"
#include "torch_ops/norm.h"

namespace torch_ops::norm {

namespace {

bool is_reduced(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }
at::ScalarType opmath_of(at::ScalarType t) { return is_reduced(t) ? at::kFloat : t; }

struct Shape {
  int64_t axis;  // first normalised dimension
  int64_t M, N;
  std::vector<int64_t> leading;  // input.shape[:axis]: the shape of mean and rstd
};

// The checks of F.layer_norm on normalized_shape and the input's trailing dimensions.
Shape shape_of(const at::Tensor& input, at::IntArrayRef normalized_shape, const char* op) {
  check_defined(input, op, "input");
  check_floating(input, op, "input");
  TORCH_CHECK(!normalized_shape.empty(), "torch_ops.", op,
              ": expected normalized_shape to be at least 1-dimensional, i.e., containing at least one element, got ",
              "normalized_shape=", normalized_shape);
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  const int64_t axis = input.dim() - k;
  bool ok = axis >= 0;
  for (int64_t i = 0; ok && i < k; ++i) ok = input.size(axis + i) == normalized_shape[i];
  if (!ok) {
    std::string dims;
    for (int64_t i = 0; i < k; ++i) dims += (i ? ", " : "") + std::to_string(normalized_shape[i]);
    TORCH_CHECK(false, "torch_ops.", op, ": expected input with shape [*, ", dims, "] (normalized_shape=",
                normalized_shape, "), got input of shape ", input.sizes());
  }
  Shape s{axis, 1, 1, std::vector<int64_t>(input.sizes().begin(), input.sizes().begin() + axis)};
  for (int64_t i = 0; i < axis; ++i) s.M *= input.size(i);
  for (int64_t i = axis; i < input.dim(); ++i) s.N *= input.size(i);
  return s;
}

// weight / bias: of normalized_shape, on the input's device, of the input's dtype or
// float32 for a float16/bfloat16 input (mixed precision); both of one dtype.
at::ScalarType check_params(const at::Tensor& input, at::IntArrayRef normalized_shape, const at::Tensor& weight,
                            const at::Tensor& bias, const char* op) {
  at::ScalarType param = input.scalar_type();
  bool first = true;
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&weight, "weight"}, {&bias, "bias"}}) {
    if (!t->defined()) continue;
    check_same_device(input, "input", *t, name, op);
    TORCH_CHECK(t->sizes() == normalized_shape, "torch_ops.", op, ": expected ", name,
                " to have the shape normalized_shape=", normalized_shape, ", got ", name, " of shape ", t->sizes());
    const auto dt = t->scalar_type();
    TORCH_CHECK(dt == input.scalar_type() || (is_reduced(input.scalar_type()) && dt == at::kFloat), "torch_ops.", op,
                ": expected ", name, " to have the dtype of input (", input.scalar_type(), ")",
                is_reduced(input.scalar_type()) ? " or float32" : "", ", got ", dt);
    if (!first)
      TORCH_CHECK(dt == param, "torch_ops.", op, ": expected bias to have the dtype of weight (", param, "), got ", dt);
    param = dt;
    first = false;
  }
  return param;
}

const at::Tensor& opt(const std::optional<at::Tensor>& t) {
  static const at::Tensor undefined;
  return t.has_value() ? *t : undefined;
}

struct FwdOut {
  at::Tensor y, sum, mean, rstd;
};

FwdOut forward_impl(const char* op, bool rms, const at::Tensor& input, const at::Tensor* residual,
                    at::IntArrayRef normalized_shape, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const Shape s = shape_of(input, normalized_shape, op);
  const at::ScalarType param = check_params(input, normalized_shape, weight, bias, op);
  if (residual) {
    check_defined(*residual, op, "residual");
    check_same_dtype(input, "input", *residual, "residual", op);
    check_same_device(input, "input", *residual, "residual", op);
    TORCH_CHECK(residual->sizes() == input.sizes(), "torch_ops.", op, ": expected residual to have the shape of input ",
                input.sizes(), ", got ", residual->sizes());
  }
  FwdOut o;
  const auto stat_opts = input.options().dtype(opmath_of(input.scalar_type()));
  o.y = empty_output(input.sizes(), input.options());  // huge pages when large (torch_ops/alloc.h)
  if (residual) o.sum = empty_output(input.sizes(), input.options());
  if (!rms) o.mean = at::empty(s.leading, stat_opts);
  o.rstd = at::empty(s.leading, stat_opts);
  if (s.M == 0) return o;
  if (s.N == 0) {  // empty rows: nothing to normalise (statistics of no element)
    if (!rms) o.mean.zero_();
    o.rstd.fill_(1.0 / std::sqrt(eps));
    return o;
  }
  const auto x = input.contiguous();
  const auto r = residual ? residual->contiguous() : at::Tensor();
  const auto w = weight.defined() ? weight.contiguous() : at::Tensor();
  const auto b = bias.defined() ? bias.contiguous() : at::Tensor();
  Forward job{rms,
              input.scalar_type(),
              param,
              s.M,
              s.N,
              eps,
              x.const_data_ptr(),
              r.defined() ? r.const_data_ptr() : nullptr,
              w.defined() ? w.const_data_ptr() : nullptr,
              b.defined() ? b.const_data_ptr() : nullptr,
              o.y.mutable_data_ptr(),
              residual ? o.sum.mutable_data_ptr() : nullptr,
              rms ? nullptr : o.mean.mutable_data_ptr(),
              o.rstd.mutable_data_ptr()};
  job.device_index = input.device().index();
  launchers_for(input, &Launchers::forward, op).forward(job);
  return o;
}

}  // namespace

double rms_eps(at::ScalarType dtype, std::optional<double> eps) {
  if (eps.has_value()) return *eps;
  // What F.rms_norm does (ATen's rms_norm): the epsilon of the opmath type, so float32's
  // for float16/bfloat16 inputs too (its docs say torch.finfo(input.dtype).eps).
  return dtype == at::kDouble ? std::numeric_limits<double>::epsilon() : std::numeric_limits<float>::epsilon();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                                          const std::optional<at::Tensor>& weight,
                                                          const std::optional<at::Tensor>& bias, double eps) {
  auto o = forward_impl("layer_norm", false, input, nullptr, normalized_shape, opt(weight), opt(bias), eps);
  return {o.y, o.mean, o.rstd};
}

std::tuple<at::Tensor, at::Tensor> rms_norm(const at::Tensor& input, at::IntArrayRef normalized_shape,
                                            const std::optional<at::Tensor>& weight, std::optional<double> eps) {
  check_defined(input, "rms_norm", "input");
  auto o = forward_impl("rms_norm", true, input, nullptr, normalized_shape, opt(weight), at::Tensor(),
                        rms_eps(input.scalar_type(), eps));
  return {o.y, o.rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm(const at::Tensor& input,
                                                                          const at::Tensor& residual,
                                                                          at::IntArrayRef normalized_shape,
                                                                          const std::optional<at::Tensor>& weight,
                                                                          const std::optional<at::Tensor>& bias,
                                                                          double eps) {
  auto o = forward_impl("add_layer_norm", false, input, &residual, normalized_shape, opt(weight), opt(bias), eps);
  return {o.y, o.sum, o.mean, o.rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& input, const at::Tensor& residual,
                                                            at::IntArrayRef normalized_shape,
                                                            const std::optional<at::Tensor>& weight,
                                                            std::optional<double> eps) {
  check_defined(input, "add_rms_norm", "input");
  auto o = forward_impl("add_rms_norm", true, input, &residual, normalized_shape, opt(weight), at::Tensor(),
                        rms_eps(input.scalar_type(), eps));
  return {o.y, o.sum, o.rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const std::optional<at::Tensor>& mean_opt,
    const at::Tensor& rstd, at::IntArrayRef normalized_shape, const std::optional<at::Tensor>& weight_opt,
    const std::optional<at::Tensor>& grad_extra_opt, double eps, std::array<bool, 3> output_mask) {
  const char* op = "norm_backward";
  (void)eps;  // only the composite (double backward) recomputes the statistics
  const Shape s = shape_of(input, normalized_shape, op);
  const at::Tensor& mean = opt(mean_opt);
  const at::Tensor& weight = opt(weight_opt);
  const at::Tensor& extra = opt(grad_extra_opt);
  const bool rms = !mean.defined();
  const at::ScalarType param = check_params(input, normalized_shape, weight, at::Tensor(), op);
  check_defined(grad_output, op, "grad_output");
  check_same_dtype(input, "input", grad_output, "grad_output", op);
  check_same_device(input, "input", grad_output, "grad_output", op);
  TORCH_CHECK(grad_output.sizes() == input.sizes(), "torch_ops.", op,
              ": expected grad_output to have the shape of input ", input.sizes(), ", got ", grad_output.sizes());
  if (extra.defined()) {
    check_same_dtype(input, "input", extra, "grad_extra", op);
    check_same_device(input, "input", extra, "grad_extra", op);
    TORCH_CHECK(extra.sizes() == input.sizes(), "torch_ops.", op, ": expected grad_extra to have the shape of input ",
                input.sizes(), ", got ", extra.sizes());
  }
  const auto stat_dtype = opmath_of(input.scalar_type());
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&mean, "mean"}, {&rstd, "rstd"}}) {
    if (t == &mean && rms) continue;
    check_defined(*t, op, name);
    check_same_device(input, "input", *t, name, op);
    TORCH_CHECK(t->scalar_type() == stat_dtype, "torch_ops.", op, ": expected ", name, " to have dtype ", stat_dtype,
                ", got ", t->scalar_type());
    TORCH_CHECK(t->sizes() == at::IntArrayRef(s.leading), "torch_ops.", op, ": expected ", name,
                " to have the input's leading shape ", at::IntArrayRef(s.leading), ", got ", t->sizes());
  }
  const bool want_dx = output_mask[0], want_dw = output_mask[1] && weight.defined(), want_db = output_mask[2] && !rms;
  const auto param_opts = input.options().dtype(param);
  at::Tensor dx = want_dx ? empty_output(input.sizes(), input.options()) : at::empty({0}, input.options());
  at::Tensor dw = want_dw ? at::empty(normalized_shape, param_opts) : at::empty({0}, param_opts);
  at::Tensor db = want_db ? at::empty(normalized_shape, param_opts) : at::empty({0}, param_opts);
  if (s.N == 0 || (!want_dx && !want_dw && !want_db)) return {dx, dw, db};
  if (s.M == 0) {
    if (want_dw) dw.zero_();
    if (want_db) db.zero_();
    return {dx, dw, db};
  }
  const auto dy = grad_output.contiguous();
  const auto x = input.contiguous();
  const auto mu = rms ? at::Tensor() : mean.contiguous();
  const auto rs = rstd.contiguous();
  const auto w = weight.defined() ? weight.contiguous() : at::Tensor();
  const auto ex = extra.defined() ? extra.contiguous() : at::Tensor();
  const int64_t block_rows = param_block_rows(s.M, s.N);
  const int64_t blocks = (s.M + block_rows - 1) / block_rows;
  const auto scratch_opts = input.options().dtype(stat_dtype);
  // The weight and bias partial rows in one scratch buffer (from the block cache when
  // large: no fresh pages per call).
  const int64_t partial_rows = (want_dw ? blocks : 0) + (want_db ? blocks : 0);
  at::Tensor partials = partial_rows ? empty_output({partial_rows, s.N}, scratch_opts) : at::Tensor();
  at::Tensor pw = want_dw ? partials.narrow(0, 0, blocks) : at::Tensor();
  at::Tensor pb = want_db ? partials.narrow(0, want_dw ? blocks : 0, blocks) : at::Tensor();
  Backward job{rms,
               input.scalar_type(),
               param,
               s.M,
               s.N,
               dy.const_data_ptr(),
               x.const_data_ptr(),
               rms ? nullptr : mu.const_data_ptr(),
               rs.const_data_ptr(),
               w.defined() ? w.const_data_ptr() : nullptr,
               ex.defined() ? ex.const_data_ptr() : nullptr,
               want_dx ? dx.mutable_data_ptr() : nullptr,
               want_dw ? dw.mutable_data_ptr() : nullptr,
               want_db ? db.mutable_data_ptr() : nullptr,
               want_dw ? pw.mutable_data_ptr() : nullptr,
               want_db ? pb.mutable_data_ptr() : nullptr,
               block_rows};
  job.device_index = input.device().index();
  launchers_for(input, &Launchers::backward, op).backward(job);
  if (!rms && s.N == 1 && want_dx) {
    // A one-element row layer-normalises to 0 whatever its value: the input gradient is
    // exactly grad_extra. (The kernels' formula rstd * (g - mean(g) - ...) cancels to a
    // rounding error times rstd = 1 / sqrt(eps) instead: g is rounded in one pass and
    // fused into an FMA in the other.)
    if (ex.defined())
      dx.copy_(ex);
    else
      dx.zero_();
  }
  return {dx, dw, db};
}

std::array<at::Tensor, 3> norm_backward_composite(const at::Tensor& grad_output, const at::Tensor& input,
                                                  bool rms, int64_t k, const at::Tensor& weight,
                                                  const at::Tensor& grad_extra, double eps,
                                                  std::array<bool, 3> output_mask) {
  const int64_t axis = input.dim() - k;
  std::vector<int64_t> norm_dims, lead_dims;
  for (int64_t i = 0; i < input.dim(); ++i) (i < axis ? lead_dims : norm_dims).push_back(i);
  const auto opmath = opmath_of(input.scalar_type());
  const at::Tensor x = input.to(opmath), dy = grad_output.to(opmath);
  at::Tensor xhat, rstd;
  if (rms) {
    rstd = at::rsqrt(x.pow(2).mean(norm_dims, /*keepdim=*/true) + eps);
    xhat = x * rstd;
  } else {
    const auto xc = x - x.mean(norm_dims, /*keepdim=*/true);
    rstd = at::rsqrt(xc.pow(2).mean(norm_dims, /*keepdim=*/true) + eps);
    xhat = xc * rstd;
  }
  const auto sum_rows = [&](const at::Tensor& t) { return lead_dims.empty() ? t : t.sum(lead_dims); };
  std::array<at::Tensor, 3> out;
  if (output_mask[0]) {
    const at::Tensor g = weight.defined() ? dy * weight.to(opmath) : dy;
    at::Tensor inner = g - xhat * (g * xhat).mean(norm_dims, /*keepdim=*/true);
    if (!rms) inner = inner - g.mean(norm_dims, /*keepdim=*/true);
    at::Tensor dx = rstd * inner;
    if (grad_extra.defined()) dx = dx + grad_extra.to(opmath);
    out[0] = dx.to(input.scalar_type());
  }
  const auto param = weight.defined() ? weight.scalar_type() : input.scalar_type();
  if (output_mask[1] && weight.defined()) out[1] = sum_rows(dy * xhat).to(param);
  if (output_mask[2] && !rms) out[2] = sum_rows(dy).to(param);
  return out;
}

void register_kernels(torch::Library& m) {
  m.impl("layer_norm", &layer_norm);
  m.impl("rms_norm", &rms_norm);
  m.impl("add_layer_norm", &add_layer_norm);
  m.impl("add_rms_norm", &add_rms_norm);
  m.impl("norm_backward", &norm_backward);
}

}  // namespace torch_ops::norm
