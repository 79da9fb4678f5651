"""The attention family: a memory-efficient ``scaled_dot_product_attention`` with CPU and
CUDA kernels and double backward: functional op, autograd Function, fake kernels and
benchmark cases.

Kernels: csrc/attention.cpp (host code: checks, argument normalisation, the composite
gradient of the double backward), csrc/cpu/kernels/attention.h and cuda/attention.cu (the
tiled kernels), the shared scalar math in csrc/include/torch_ops/attention_math.h; autograd
in csrc/autograd/attention.cpp. Dispatcher ops (schemas in csrc/ops.cpp):

* ``scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, *,
  scale, enable_gqa, seed)``: F.scaled_dot_product_attention's semantics
* ``attention(q, k, v, mask, dropout_p, is_causal, scale, seed)``: the core op on
  q (B, H, L, E), k (B, Hk, S, E), v (B, Hk, S, Ev), an additive 4-D mask
* ``attention_forward`` -> (out, lse) and ``attention_backward`` -> (grad_q, grad_k, grad_v,
  grad_mask): what autograd saves and calls
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

_ops = torch.ops.torch_ops


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"torch_ops.scaled_dot_product_attention: expected {name} to be a Tensor, got {type(t).__name__}")


def _draw_seed() -> Tensor:
    """The dropout stream of one call, drawn from torch's default CPU generator (so that
    ``torch.manual_seed`` makes it reproducible); the backward regenerates the mask from it."""
    return torch.randint(0, 2**62, (), dtype=torch.int64)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention``: softmax(q k^T * scale + mask) v
    over inputs (..., L, E), (..., S, E), (..., S, Ev); leading dimensions broadcast; bool
    masks (True: may attend) and additive masks; ``is_causal`` (top-left aligned); ``scale``
    (default 1 / sqrt(E)); ``enable_gqa`` (key/value heads dividing the query heads); dropout
    on the attention weights with a mask regenerated in the backward, never stored.

    Memory-efficient: the L x S scores are never materialised (forward, backward); autograd
    saves the output and one log-sum-exp per query row."""
    _check_tensor(query, "query")
    _check_tensor(key, "key")
    _check_tensor(value, "value")
    if attn_mask is not None:
        _check_tensor(attn_mask, "attn_mask")
    if not isinstance(dropout_p, numbers.Real):
        raise TypeError(f"torch_ops.scaled_dot_product_attention: expected dropout_p to be a float, got {type(dropout_p).__name__}")
    seed = _draw_seed() if dropout_p > 0.0 else None
    return _ops.scaled_dot_product_attention.default(
        query, key, value, attn_mask, float(dropout_p), bool(is_causal),
        scale=None if scale is None else float(scale), enable_gqa=bool(enable_gqa), seed=seed,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# autograd Function. Its backward calls attention_backward, which has autograd of its own
# (csrc/autograd/attention.cpp): double backward works through it.


class AttentionFunction(torch.autograd.Function):
    """The core attention op: ``AttentionFunction.apply(q, k, v, attn_mask=None,
    dropout_p=0.0, is_causal=False, scale=None, seed=None)`` with q (B, H, L, E),
    k (B, Hk, S, E), v (B, Hk, S, Ev), Hk dividing H, an additive 4-D mask broadcastable to
    (B, H, L, S) and, for dropout, a seed (a CPU int64 tensor with one element).

    Saves q, k, v, the mask, the output and the per-row log-sum-exp (no L x S matrix)."""

    @staticmethod
    def forward(q, k, v, attn_mask, dropout_p, is_causal, scale, seed):
        return _ops.attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, seed)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, attn_mask, dropout_p, is_causal, scale, seed = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, attn_mask, out, lse, seed)
        ctx.args = (dropout_p, is_causal, scale)
        ctx.mark_non_differentiable(lse)

    @staticmethod
    def backward(ctx, grad_out, _grad_lse):
        q, k, v, attn_mask, out, lse, seed = ctx.saved_tensors
        dropout_p, is_causal, scale = ctx.args
        need = [ctx.needs_input_grad[i] for i in range(3)] + [attn_mask is not None and ctx.needs_input_grad[3]]
        grads = _ops.attention_backward(grad_out, q, k, v, attn_mask, out, lse, dropout_p, is_causal, scale, seed, need)
        return tuple(g if n else None for g, n in zip(grads, need)) + (None,) * 4

    @classmethod
    def apply(cls, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, seed=None):  # noqa: D102
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        if dropout_p > 0.0 and seed is None:
            seed = _draw_seed()
        return super().apply(q, k, v, attn_mask, float(dropout_p), bool(is_causal), scale, seed)[0]


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes and dtypes, and the checks that need no data.

_OP = "torch_ops.scaled_dot_product_attention"


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_core(q, k, v, mask, is_causal):
    for t, name in ((q, "query"), (k, "key"), (v, "value")):
        torch._check(t.dim() == 4, lambda: f"{_OP}: expected {name} to be 4-D, got {t.dim()}-D (shape {tuple(t.shape)})")
        torch._check(t.dtype == q.dtype, lambda: f"{_OP}: expected {name} to have the dtype of query ({q.dtype}), got {t.dtype}")
    torch._check(q.is_floating_point(), lambda: f"{_OP}: expected query to have a floating-point dtype, got {q.dtype}")
    B, H, L, E = q.shape
    Hk, S = k.shape[1], k.shape[2]
    torch._check(k.shape[0] == B and v.shape[0] == B, lambda: f"{_OP}: expected key and value to have the batch size of query ({B})")
    torch._check(v.shape[1] == Hk and v.shape[2] == S, lambda: f"{_OP}: expected value to have the heads and length of key")
    torch._check(k.shape[3] == E, lambda: f"{_OP}: expected key.size(3) == {E} (the head dimension of query), got {k.shape[3]}")
    torch._check(H % Hk == 0 if Hk > 0 else H == 0, lambda: f"{_OP}: expected the heads of key and value ({Hk}) to divide the heads of query ({H})")
    if mask is not None:
        torch._check(not is_causal, lambda: f"{_OP}: expected attn_mask to be None when is_causal=True")
        torch._check(mask.dim() == 4, lambda: f"{_OP}: expected attn_mask to be 4-D, got {mask.dim()}-D")
    return B, H, L, S, v.shape[3]


@torch.library.register_fake("torch_ops::attention_forward")
def _attention_forward_fake(q, k, v, attn_mask, dropout_p, is_causal, scale, seed):
    B, H, L, S, Ev = _check_core(q, k, v, attn_mask, is_causal)
    return q.new_empty((B, H, L, Ev)), q.new_empty((B, H, L), dtype=_acc(q.dtype))


@torch.library.register_fake("torch_ops::attention")
def _attention_fake(q, k, v, attn_mask, dropout_p, is_causal, scale, seed):
    return _attention_forward_fake(q, k, v, attn_mask, dropout_p, is_causal, scale, seed)[0]


@torch.library.register_fake("torch_ops::attention_backward")
def _attention_backward_fake(grad_out, q, k, v, attn_mask, out, lse, dropout_p, is_causal, scale, seed, output_mask):
    _check_core(q, k, v, attn_mask, is_causal)
    empty = q.new_empty((0,))
    gm = attn_mask.new_empty(attn_mask.shape) if output_mask[3] and attn_mask is not None else q.new_empty((0,))
    return (
        q.new_empty(q.shape) if output_mask[0] else empty,
        k.new_empty(k.shape) if output_mask[1] else q.new_empty((0,)),
        v.new_empty(v.shape) if output_mask[2] else q.new_empty((0,)),
        gm,
    )


# ---------------------------------------------------------------------------------------
# Benchmarks


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench --ops scaled_dot_product_attention``).

    batch 4, 8 heads, head dim 64, sequence 1024 and 4096, causal and not, against
    ``F.scaled_dot_product_attention`` (its fastest backend for the device: on CPU the
    flash-attention kernel); a small case for the per-call overhead.
    """
    import torch.nn.functional as F

    from .bench import Case

    def qkv(b, h, n, e):
        def make(device, dtype):
            return tuple(torch.randn(b, h, n, e, device=device, dtype=dtype, requires_grad=True) for _ in range(3))

        return make

    cases = [
        Case("scaled_dot_product_attention", "small", "q,k,v 1x2x32x16", qkv(1, 2, 32, 16),
             ours=scaled_dot_product_attention, eager=F.scaled_dot_product_attention),
    ]  # fmt: skip
    for n in (1024, 4096):
        for causal in (False, True):
            def ours(q, k, v, causal=causal):
                return scaled_dot_product_attention(q, k, v, is_causal=causal)

            def eager(q, k, v, causal=causal):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            flops = 4 * 4 * 8 * n * n * 64 // (2 if causal else 1)
            cases.append(
                Case("scaled_dot_product_attention", f"{'causal' if causal else 'full'}-{n}",
                     f"q,k,v 4x8x{n}x64{' causal' if causal else ''}", qkv(4, 8, n, 64), ours=ours, eager=eager,
                     size="large", flops_fwd=flops, flops_bwd=int(2.5 * flops))
            )  # fmt: skip
    # The GPU target (bfloat16 / float16 only, so CPU float32 runs skip it): head dim 128.
    cases.append(
        Case("scaled_dot_product_attention", "full-4096-d128", "q,k,v 4x8x4096x128", qkv(4, 8, 4096, 128),
             ours=scaled_dot_product_attention, eager=F.scaled_dot_product_attention, size="large",
             flops_fwd=4 * 4 * 8 * 4096 * 4096 * 128, flops_bwd=10 * 4 * 8 * 4096 * 4096 * 128,
             dtypes=(torch.bfloat16, torch.float16))
    )  # fmt: skip
    return cases
