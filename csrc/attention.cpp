// attention: device-generic host code. Checks, the inputs made contiguous, outputs, and
// Forward / Backward jobs for the device's launcher (csrc/cpu/attention.cpp,
// cuda/attention.cu); scaled_dot_product_attention's argument normalisation (broadcasting,
// grouped-query heads, bool masks, the default scale); and the backward written with
// differentiable ops, which the double backward differentiates.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "torch_ops/alloc.h"
#include "torch_ops/attention.h"
#include "torch_ops/attention_math.h"
#include "torch_ops/checks.h"
#include "torch_ops/ops.h"

namespace torch_ops::attention {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";
using OptT = std::optional<at::Tensor>;

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

struct Dims {
  int64_t B, H, Hk, L, S, E, Ev;
};

// The core ops' arguments: q (B, H, L, E), k (B, Hk, S, E), v (B, Hk, S, Ev), H % Hk == 0;
// the mask 4-D and broadcastable to (B, H, L, S).
Dims check_core(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask, bool causal,
                double dropout_p) {
  check_defined(q, kOp, "query");
  check_defined(k, kOp, "key");
  check_defined(v, kOp, "value");
  check_dim(q, 4, kOp, "query");
  check_dim(k, 4, kOp, "key");
  check_dim(v, 4, kOp, "value");
  check_floating(q, kOp, "query");
  check_same_dtype(q, "query", k, "key", kOp);
  check_same_dtype(q, "query", v, "value", kOp);
  check_same_device(q, "query", k, "key", kOp);
  check_same_device(q, "query", v, "value", kOp);
  const Dims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), v.size(3)};
  check_size(k, 0, d.B, kOp, "key", "the batch size of query");
  check_size(v, 0, d.B, kOp, "value", "the batch size of query");
  check_size(v, 1, d.Hk, kOp, "value", "the heads of key");
  check_size(v, 2, d.S, kOp, "value", "the sequence length of key");
  check_size(k, 3, d.E, kOp, "key", "the head dimension of query");
  TORCH_CHECK(d.Hk > 0 ? d.H % d.Hk == 0 : d.H == 0, "torch_ops.", kOp,
              ": expected the heads of key and value (", d.Hk, ") to divide the heads of query (", d.H, ")");
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, "torch_ops.", kOp,
              ": expected dropout_p to be in [0, 1], got ", dropout_p);
  if (mask.has_value()) {
    const at::Tensor& m = *mask;
    check_defined(m, kOp, "attn_mask");
    TORCH_CHECK(!causal, "torch_ops.", kOp, ": expected attn_mask to be None when is_causal=True");
    check_dim(m, 4, kOp, "attn_mask");
    check_floating(m, kOp, "attn_mask");
    check_same_device(q, "query", m, "attn_mask", kOp);
    const int64_t full[4] = {d.B, d.H, d.L, d.S};
    for (int i = 0; i < 4; ++i)
      TORCH_CHECK(m.size(i) == 1 || m.size(i) == full[i], "torch_ops.", kOp, ": expected attn_mask (shape ",
                  m.sizes(), ") to broadcast to (", d.B, ", ", d.H, ", ", d.L, ", ", d.S, ")");
  }
  return d;
}

uint64_t seed_of(const OptT& seed, double dropout_p) {
  if (dropout_p == 0.0) return 0;
  TORCH_CHECK(seed.has_value() && seed->defined(), "torch_ops.", kOp,
              ": expected a seed (an int64 tensor with one element) when dropout_p > 0");
  TORCH_CHECK(seed->numel() == 1 && seed->scalar_type() == at::kLong && seed->device().is_cpu(), "torch_ops.", kOp,
              ": expected seed to be a CPU int64 tensor with one element, got ", seed->scalar_type(), " of shape ",
              seed->sizes(), " on ", seed->device());
  return static_cast<uint64_t>(seed->item<int64_t>());
}

// The mask as the kernels read it: acc_t, the last dimension contiguous (not broadcast),
// the other dimensions by stride (0 where broadcast). `holder` keeps the storage alive.
void set_mask(Problem& p, const OptT& mask, const Dims& d, at::Tensor& holder) {
  if (!mask.has_value()) return;
  at::Tensor m = mask->to(acc_type(p.dtype));
  if (m.size(3) != d.S) m = m.expand({m.size(0), m.size(1), m.size(2), d.S});
  if (d.S > 1 && m.stride(3) != 1) m = m.contiguous();
  holder = m;
  m = m.expand({d.B, d.H, d.L, d.S});
  p.mask = holder.const_data_ptr();
  p.mask_sb = m.stride(0);
  p.mask_sh = m.stride(1);
  p.mask_sl = m.stride(2);
}

Problem problem(const at::Tensor& q, const Dims& d, double dropout_p, bool causal, double scale, const OptT& seed) {
  Problem p;
  p.dtype = q.scalar_type();
  p.B = d.B;
  p.H = d.H;
  p.Hk = d.Hk;
  p.L = d.L;
  p.S = d.S;
  p.E = d.E;
  p.Ev = d.Ev;
  p.scale = scale;
  p.causal = causal;
  p.dropout_p = dropout_p;
  p.seed = seed_of(seed, dropout_p);
  p.device_index = q.device().index();
  return p;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                     const OptT& mask, double dropout_p, bool is_causal, double scale,
                                                     const OptT& seed) {
  const Dims d = check_core(q, k, v, mask, is_causal, dropout_p);
  Forward job;
  static_cast<Problem&>(job) = problem(q, d, dropout_p, is_causal, scale, seed);
  at::Tensor out = empty_output({d.B, d.H, d.L, d.Ev}, q.options());
  at::Tensor lse = at::empty({d.B, d.H, d.L}, q.options().dtype(acc_type(q.scalar_type())));
  if (d.B * d.H * d.L == 0) return {out, lse};
  if (d.S == 0) {  // nothing to attend to: as PyTorch, output 0
    out.zero_();
    lse.fill_(-std::numeric_limits<double>::infinity());
    return {out, lse};
  }
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor mask_holder;
  set_mask(job, mask, d, mask_holder);
  job.q = qc.const_data_ptr();
  job.k = kc.const_data_ptr();
  job.v = vc.const_data_ptr();
  job.out = out.mutable_data_ptr();
  job.lse = lse.mutable_data_ptr();
  launchers_for(q, &Launchers::forward, kOp).forward(job);
  return {out, lse};
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
                     double dropout_p, bool is_causal, double scale, const OptT& seed) {
  return std::get<0>(attention_forward(q, k, v, mask, dropout_p, is_causal, scale, seed));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptT& mask,
    const at::Tensor& out, const at::Tensor& lse, double dropout_p, bool is_causal, double scale, const OptT& seed,
    std::array<bool, 4> output_mask) {
  const Dims d = check_core(q, k, v, mask, is_causal, dropout_p);
  check_defined(grad_out, kOp, "grad_output");
  check_defined(out, kOp, "output");
  check_defined(lse, kOp, "lse");
  check_same_dtype(q, "query", grad_out, "grad_output", kOp);
  check_same_dtype(q, "query", out, "output", kOp);
  check_same_device(q, "query", grad_out, "grad_output", kOp);
  const std::vector<int64_t> out_shape{d.B, d.H, d.L, d.Ev};
  TORCH_CHECK(grad_out.sizes() == out_shape && out.sizes() == out_shape, "torch_ops.", kOp,
              ": expected grad_output and output of shape ", at::IntArrayRef(out_shape), ", got ", grad_out.sizes(),
              " and ", out.sizes());
  TORCH_CHECK(lse.sizes() == at::IntArrayRef({d.B, d.H, d.L}) && lse.scalar_type() == acc_type(q.scalar_type()),
              "torch_ops.", kOp, ": expected lse of shape (", d.B, ", ", d.H, ", ", d.L, ") and dtype ",
              acc_type(q.scalar_type()), ", got ", lse.sizes(), " ", lse.scalar_type());
  Backward job;
  static_cast<Problem&>(job) = problem(q, d, dropout_p, is_causal, scale, seed);
  const bool want_mask = output_mask[3] && mask.has_value();
  at::Tensor gq = output_mask[0] ? empty_output(q.sizes(), q.options()) : at::Tensor();
  at::Tensor gk = output_mask[1] ? empty_output(k.sizes(), k.options()) : at::Tensor();
  at::Tensor gv = output_mask[2] ? empty_output(v.sizes(), v.options()) : at::Tensor();
  at::Tensor gs = want_mask ? at::empty({d.B, d.H, d.L, d.S}, q.options().dtype(acc_type(q.scalar_type())))
                            : at::Tensor();
  const bool any = output_mask[0] || output_mask[1] || output_mask[2] || want_mask;
  if (any && d.B * d.H * d.L * d.S > 0) {
    const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
    const at::Tensor oc = out.contiguous(), gc = grad_out.contiguous(), lc = lse.contiguous();
    at::Tensor mask_holder;
    set_mask(job, mask, d, mask_holder);
    job.q = qc.const_data_ptr();
    job.k = kc.const_data_ptr();
    job.v = vc.const_data_ptr();
    job.out = oc.const_data_ptr();
    job.grad_out = gc.const_data_ptr();
    job.lse = lc.const_data_ptr();
    job.grad_q = gq.defined() ? gq.mutable_data_ptr() : nullptr;
    job.grad_k = gk.defined() ? gk.mutable_data_ptr() : nullptr;
    job.grad_v = gv.defined() ? gv.mutable_data_ptr() : nullptr;
    job.grad_mask = gs.defined() ? gs.mutable_data_ptr() : nullptr;
    launchers_for(q, &Launchers::backward, kOp).backward(job);
  } else {  // an empty problem: every gradient is 0
    for (at::Tensor* g : {&gq, &gk, &gv, &gs})
      if (g->defined()) g->zero_();
  }
  if (want_mask) gs = gs.sum_to_size(mask->sizes()).to(mask->scalar_type());
  // Gradients that output_mask leaves out are empty (0,) tensors.
  for (at::Tensor* g : {&gq, &gk, &gv, &gs})
    if (!g->defined()) *g = at::empty({0}, q.options());
  return {gq, gk, gv, gs};
}

at::Tensor attention_dropout_mask(const at::Tensor& q, int64_t S, double dropout_p, const OptT& seed) {
  check_dim(q, 4, kOp, "query");
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2);
  const uint64_t s = seed_of(seed, dropout_p);
  // The mask is made on the CPU (the hash of torch_ops/attention_math.h, the one every
  // kernel uses) and moved to the query's device: only the double backward with dropout
  // needs it as a tensor.
  at::Tensor z = at::empty({B, H, L, S}, q.options().device(at::kCPU).dtype(at::kDouble));
  const double keep_scale = dropout_p < 1.0 ? 1.0 / (1.0 - dropout_p) : 0.0;
  double* zp = z.mutable_data_ptr<double>();
  at::parallel_for(0, z.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      zp[i] = dropout_p == 0.0 || math::dropout_keep(s, static_cast<uint64_t>(i), dropout_p) ? keep_scale : 0.0;
  });
  if (dropout_p == 0.0) z.fill_(1.0);
  return z.to(q.device(), q.scalar_type());
}

std::array<at::Tensor, 4> attention_backward_composite(const at::Tensor& grad_out, const at::Tensor& q,
                                                       const at::Tensor& k, const at::Tensor& v,
                                                       const at::Tensor& mask, double dropout_p, bool is_causal,
                                                       double scale, const OptT& seed,
                                                       std::array<bool, 4> output_mask) {
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), Hk = k.size(1), S = k.size(2);
  const int64_t G = H / Hk;
  const auto group = [&](const at::Tensor& t) {  // (B, Hk, S, D) -> (B, H, S, D)
    return G == 1 ? t : t.unsqueeze(2).expand({B, Hk, G, S, t.size(3)}).reshape({B, H, S, t.size(3)});
  };
  const auto ungroup = [&](const at::Tensor& t) {  // (B, H, S, D) -> (B, Hk, S, D), summed
    return G == 1 ? t : t.view({B, Hk, G, S, t.size(3)}).sum(2);
  };
  const at::Tensor kx = group(k), vx = group(v);
  at::Tensor s = at::matmul(q, kx.transpose(-2, -1)).mul(scale);
  if (mask.defined()) s = s + mask;
  if (is_causal) {
    const at::Tensor above = at::ones({L, S}, q.options().dtype(at::kBool)).triu(1);
    s = s.masked_fill(above, -std::numeric_limits<double>::infinity());
  }
  // A row that attends to nothing has probabilities 0 (as PyTorch), and no gradient: its
  // scores are replaced before the softmax so that no nan enters the graph.
  const at::Tensor empty_row = (s == -std::numeric_limits<double>::infinity()).all(-1, /*keepdim=*/true);
  at::Tensor p = ops::softmax(s.masked_fill(empty_row, 0.0), -1).masked_fill(empty_row, 0.0);
  at::Tensor z;
  if (dropout_p > 0.0) z = attention_dropout_mask(q, S, dropout_p, seed);
  const at::Tensor pd = z.defined() ? p * z : p;
  const at::Tensor dpd = at::matmul(grad_out, vx.transpose(-2, -1));
  const at::Tensor dp = z.defined() ? dpd * z : dpd;
  const at::Tensor ds = p * (dp - (dp * p).sum(-1, /*keepdim=*/true));
  std::array<at::Tensor, 4> r;
  if (output_mask[0]) r[0] = at::matmul(ds, kx).mul(scale);
  if (output_mask[1]) r[1] = ungroup(at::matmul(ds.transpose(-2, -1), q).mul(scale));
  if (output_mask[2]) r[2] = ungroup(at::matmul(pd.transpose(-2, -1), grad_out));
  if (output_mask[3] && mask.defined()) r[3] = ds.sum_to_size(mask.sizes());
  return r;
}

// --------------------------------------------------------------------------------------
// scaled_dot_product_attention: F.scaled_dot_product_attention's argument handling.

at::Tensor scaled_dot_product_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const OptT& attn_mask, double dropout_p, bool is_causal,
                                        std::optional<double> scale, bool enable_gqa, const OptT& seed) {
  check_defined(query, kOp, "query");
  check_defined(key, kOp, "key");
  check_defined(value, kOp, "value");
  TORCH_CHECK(query.dim() >= 2 && key.dim() >= 2 && value.dim() >= 2, "torch_ops.", kOp,
              ": expected query, key and value to be at least 2-D, got ", query.dim(), "-D, ", key.dim(), "-D and ",
              value.dim(), "-D");
  check_floating(query, kOp, "query");
  check_same_dtype(query, "query", key, "key", kOp);
  check_same_dtype(query, "query", value, "value", kOp);
  TORCH_CHECK(query.size(-1) == key.size(-1), "torch_ops.", kOp, ": expected key.size(-1) == query.size(-1) (",
              query.size(-1), "), got ", key.size(-1));
  TORCH_CHECK(key.size(-2) == value.size(-2), "torch_ops.", kOp, ": expected value.size(-2) == key.size(-2) (",
              key.size(-2), "), got ", value.size(-2));
  TORCH_CHECK(!(is_causal && attn_mask.has_value()), "torch_ops.", kOp,
              ": expected attn_mask to be None when is_causal=True");
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, "torch_ops.", kOp,
              ": expected dropout_p to be in [0, 1], got ", dropout_p);
  const int64_t L = query.size(-2), S = key.size(-2), E = query.size(-1), Ev = value.size(-1);

  // Every input of the same rank R >= 3 (leading 1s): (batch..., heads, seq, dim).
  int64_t R = std::max<int64_t>({query.dim(), key.dim(), value.dim(), 3});
  if (attn_mask.has_value()) R = std::max<int64_t>(R, attn_mask->dim());
  // The reshaping below touches only what needs it: every view of an input that requires
  // grad is an autograd node in the forward and a function call in the backward (for
  // 4-D inputs of one batch size and head count, as from nn.MultiheadAttention, there is
  // none, which saved 45 us of a 75 us forward and 110 us of a 335 us forward+backward
  // at 1x2x32x16).
  const auto lift = [&](const at::Tensor& t) {
    if (t.dim() == R) return t;
    std::vector<int64_t> shape(R - t.dim(), 1);
    shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
    return t.view(shape);
  };
  at::Tensor q = lift(query), k = lift(key), v = lift(value);
  int64_t Hq = q.size(-3), Hk = k.size(-3), Hv = v.size(-3);
  int64_t H;
  if (enable_gqa) {
    TORCH_CHECK(Hk > 0 && Hv > 0 && Hq % Hk == 0 && Hq % Hv == 0, "torch_ops.", kOp,
                ": expected the heads of key (", Hk, ") and value (", Hv, ") to divide the heads of query (", Hq,
                ") with enable_gqa=True");
    H = Hq;
    if (Hk != Hv) {  // the kernels take one head count for key and value
      k = k.repeat_interleave(Hq / Hk, -3);
      v = v.repeat_interleave(Hq / Hv, -3);
    }
  } else {
    H = at::infer_size({Hq}, at::infer_size({Hk}, {Hv}))[0];
    if (Hk != Hv) {  // one of them is broadcast: both to H heads
      std::vector<int64_t> ks = k.sizes().vec(), vs = v.sizes().vec();
      ks[R - 3] = H;
      vs[R - 3] = H;
      k = k.expand(ks);
      v = v.expand(vs);
    }
  }
  if (Hq != H) {
    std::vector<int64_t> qs = q.sizes().vec();
    qs[R - 3] = H;
    q = q.expand(qs);
  }
  Hk = k.size(-3);

  // The batch dimensions, broadcast, flattened into one.
  const auto batch_of = [&](const at::Tensor& t) { return t.sizes().slice(0, R - 3); };
  std::vector<int64_t> batch = at::infer_size(batch_of(q), at::infer_size(batch_of(k), batch_of(v)));
  OptT mask;
  if (attn_mask.has_value()) {
    check_defined(*attn_mask, kOp, "attn_mask");
    at::Tensor m = *attn_mask;
    const auto mt = m.scalar_type();
    TORCH_CHECK(mt == at::kBool || mt == query.scalar_type() || mt == at::kFloat, "torch_ops.", kOp,
                ": expected attn_mask to be bool, float32 or of query's dtype (", query.scalar_type(), "), got ", mt);
    m = lift(m);
    batch = at::infer_size(batch, batch_of(m));
    if (mt == at::kBool)  // True: may attend; False: -inf
      m = at::zeros(m.sizes(), m.options().dtype(query.scalar_type()))
              .masked_fill_(m.logical_not(), -std::numeric_limits<double>::infinity());
    // (batch..., heads, L, S) -> (B or 1, heads or 1, L or 1, S or 1)
    const bool batched = std::any_of(batch_of(m).begin(), batch_of(m).end(), [](int64_t s) { return s != 1; });
    std::vector<int64_t> shape = batched ? batch : std::vector<int64_t>(R - 3, 1);
    shape.insert(shape.end(), m.sizes().end() - 3, m.sizes().end());
    m = m.expand(shape);
    mask = m.reshape({batched ? c10::multiply_integers(batch) : 1, m.size(-3), m.size(-2), m.size(-1)});
  }
  const int64_t B = c10::multiply_integers(batch);
  const auto flat = [&](const at::Tensor& t) {
    if (R == 4 && t.size(0) == B) return t;
    std::vector<int64_t> shape = batch;
    shape.insert(shape.end(), t.sizes().end() - 3, t.sizes().end());
    return t.expand(shape).reshape({B, t.size(-3), t.size(-2), t.size(-1)});
  };
  q = flat(q);
  k = flat(k);
  v = flat(v);

  const double sc = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(E));
  OptT sd = seed;
  if (dropout_p > 0.0 && !(seed.has_value() && seed->defined()))
    sd = at::empty({}, query.options().device(at::kCPU).dtype(at::kLong)).random_();
  at::Tensor out = ops::attention(q, k, v, mask, dropout_p, is_causal, sc, sd);

  // Back to the broadcast leading shape of the inputs, in their original rank.
  std::vector<int64_t> lead = batch;
  lead.push_back(H);
  const int64_t out_rank = std::max<int64_t>({query.dim(), key.dim(), value.dim(),
                                              attn_mask.has_value() ? attn_mask->dim() : 0});
  std::vector<int64_t> shape(lead.end() - (out_rank - 2), lead.end());
  shape.push_back(L);
  shape.push_back(Ev);
  (void)S;
  return out.sizes() == at::IntArrayRef(shape) ? out : out.view(shape);
}

void register_kernels(torch::Library& m) {
  m.impl("attention", &attention);
  m.impl("attention_forward", &attention_forward);
  m.impl("attention_backward", &attention_backward);
}

}  // namespace torch_ops::attention
