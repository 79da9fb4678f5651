"""Property tests (hypothesis) of every op against PyTorch: random shapes (zero-size and
size-1 dimensions included), layouts (contiguous, transposed, sliced, expanded), dtypes
and argument values; forward and gradients.

Seeded (derandomized) and small in the normal run; TORCH_OPS_FUZZ_EXAMPLES=N sets the
number of examples per op (e.g. 2000 for a long run).
"""

import os

import pytest
import torch
import torch.nn.functional as F

import torch_ops
from conftest import TOL

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("TORCH_OPS_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
SIZES = st.sampled_from([0, 1, 1, 2, 3, 5, 8, 13])


def shapes(min_dims=0, max_dims=4):
    return st.lists(SIZES, min_size=min_dims, max_size=max_dims).map(tuple)


def tensor(draw, shape, dtype, requires_grad=True):
    """A tensor of `shape` in one of the layouts a caller may hand in."""
    shape = tuple(shape)
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced", "expanded"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([0.5, 2.0, 6.0]))

    def rnd(s):
        return (torch.randn(s, generator=g, dtype=torch.float64) * scale).to(dtype)

    if layout == "transposed" and len(shape) >= 2:
        t = rnd(shape[:-2] + (shape[-1], shape[-2])).transpose(-1, -2)
    elif layout == "sliced" and len(shape) >= 1:
        t = rnd(shape[:-1] + (2 * shape[-1],))[..., ::2]
    elif layout == "expanded" and len(shape) >= 1:
        d = draw(st.integers(0, len(shape) - 1))
        t = rnd(shape[:d] + (1,) + shape[d + 1 :]).expand(shape)
    else:
        t = rnd(shape)
    return t.requires_grad_(requires_grad)


# Each spec draws (inputs, ours, reference[, options for _close]): the callables take the
# inputs positionally.


def _linear(draw, dtype):
    lead, k, n = draw(shapes(0, 3)), draw(SIZES), draw(SIZES)
    x, w = tensor(draw, lead + (k,), dtype), tensor(draw, (n, k), dtype)
    if draw(st.booleans()):
        return [x, w, tensor(draw, (n,), dtype)], torch_ops.linear, F.linear
    return [x, w], torch_ops.linear, F.linear


def _fused(draw, dtype):
    inputs, _, _ = _linear(draw, dtype)
    act = draw(st.sampled_from([None, "relu", "gelu", "gelu_tanh", "silu"]))
    f = {None: lambda t: t, "relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu}[act]
    return inputs, (lambda *a: torch_ops.fused_linear(*a, activation=act)), (lambda *a: f(F.linear(*a)))


def _unary(name):
    def spec(draw, dtype):
        x = tensor(draw, draw(shapes()), dtype)
        if name == "leaky_relu":
            s = draw(st.sampled_from([0.01, 0.2, 1.0, -1.5]))
            return [x], (lambda t: torch_ops.leaky_relu(t, s)), (lambda t: F.leaky_relu(t, s))
        if name == "gelu":
            a = draw(st.sampled_from(["none", "tanh"]))
            return [x], (lambda t: torch_ops.gelu(t, approximate=a)), (lambda t: F.gelu(t, approximate=a))
        ref = {"relu": F.relu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]
        return [x], getattr(torch_ops, name), ref

    return spec


def _gated(name):
    def spec(draw, dtype):
        shape = list(draw(shapes(1, 4)))
        dim = draw(st.integers(-len(shape), len(shape) - 1))
        shape[dim] = 2 * draw(st.sampled_from([0, 1, 2, 3, 4]))
        x = tensor(draw, shape, dtype)
        if name == "glu":
            return [x], (lambda t: torch_ops.glu(t, dim)), (lambda t: F.glu(t, dim))
        a = draw(st.sampled_from(["none", "tanh"]))
        act = F.silu if name == "swiglu" else (lambda t: F.gelu(t, approximate=a))
        ours = (lambda t: torch_ops.swiglu(t, dim)) if name == "swiglu" else (lambda t: torch_ops.geglu(t, dim, a))

        def ref(t):
            u, v = t.chunk(2, dim)
            return act(u) * v

        return [x], ours, ref

    return spec


REDUCED = (torch.bfloat16, torch.float16)


def _norm(name):
    """layer_norm / rms_norm against F.layer_norm / F.rms_norm, the add variants against
    (norm(x + r), x + r): 1 to 3 normalised dimensions, weight / bias or not (float32 ones
    with a float16/bfloat16 input too), eps."""
    rms, add = "rms" in name, name.startswith("add_")

    def spec(draw, dtype):
        ns = draw(shapes(1, 3))
        shape = draw(shapes(0, 2)) + ns
        x = tensor(draw, shape, dtype)
        inputs = [x, tensor(draw, shape, dtype)] if add else [x]
        pdt = draw(st.sampled_from([dtype, torch.float32])) if dtype in REDUCED else dtype
        w = tensor(draw, ns, pdt) if draw(st.booleans()) else None
        # (a float32 bias only with a float32 weight: PyTorch's backward refuses it alone)
        b = tensor(draw, ns, pdt if w is not None else dtype) if not rms and draw(st.booleans()) else None
        eps = draw(st.sampled_from([None, 1e-6, 0.1] if rms else [1e-5, 1e-3, 0.1]))
        params = [t for t in (w, b) if t is not None]
        ours_fn, k = getattr(torch_ops, name), len(inputs)

        def split(t):  # (x[, r][, w][, b]) -> [x[, r]], w, b
            rest = iter(t[k:])
            return list(t[:k]), next(rest) if w is not None else None, next(rest) if b is not None else None

        def ours(*t):
            xs, w_, b_ = split(t)
            return ours_fn(*xs, ns, w_, eps) if rms else ours_fn(*xs, ns, w_, b_, eps)

        def ref(*t):  # (with the float64 inputs of the truth: x + r rounded to the dtype, as computed)
            xs, w_, b_ = split(t)
            s = (xs[0] + xs[1]).to(dtype).to(xs[0].dtype) if add else xs[0]
            y = F.rms_norm(s, ns, w_, eps) if rms else F.layer_norm(s, ns, w_, b_, eps)
            return (y, s) if add else y

        # (a row of nearly equal values: its gradient cancels terms rstd = 1 / sqrt(var + eps)
        # times larger than itself, so where one computation's rounding happens to cancel, the
        # other's need not: judged against PyTorch's worst element, as linear_cross_entropy)
        return inputs + params, ours, ref, {"tensorwise": True}

    return spec


def _softmax(name):
    """softmax / log_softmax over any dim of any rank, with or without dtype."""

    def spec(draw, dtype):
        shape = draw(shapes())
        dim = draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
        out_dtype = draw(st.sampled_from([None, None, torch.float32, torch.float64]))
        f, ours_fn = getattr(F, name), getattr(torch_ops, name)
        inputs = [tensor(draw, shape, dtype)]
        # computed in out_dtype: a float64 input's gradient too, when out_dtype is float32
        low = torch.float32 if (dtype, out_dtype) == (torch.float64, torch.float32) else None
        return inputs, (lambda t: ours_fn(t, dim, dtype=out_dtype)), (lambda t: f(t, dim, dtype=out_dtype)), {"computed_in": low}

    return spec


def _cross_entropy(draw, dtype):
    """Inputs (C), (N, C) or (N, C, d1[, d2]); class-index targets (some ignored) or class
    probabilities; class weights; every reduction; label smoothing."""
    c = draw(st.sampled_from([0, 1, 2, 3, 5, 8]))
    lead = draw(st.sampled_from([(), (draw(SIZES),), (draw(SIZES), draw(SIZES)), (draw(SIZES), draw(SIZES), draw(SIZES))]))
    if c == 0:
        lead = lead[:1]  # (PyTorch's nll_loss refuses zero classes with spatial dimensions)
    shape = (c,) if not lead else (lead[0], c) + lead[1:]
    x = tensor(draw, shape, dtype)
    prob = draw(st.booleans())
    if prob:
        target = tensor(draw, shape, dtype).detach().softmax(0 if len(shape) == 1 else 1).requires_grad_(draw(st.booleans()))
        ignore = -100
    else:
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        ignore = draw(st.sampled_from([-100, 0, c - 1]))
        target = torch.randint(0, c, tshape, generator=g) if c else torch.full(tshape, ignore)  # no class: all ignored
        if target.numel() and draw(st.booleans()):
            target.view(-1)[:: draw(st.sampled_from([1, 2, 3]))] = ignore
    weight = tensor(draw, (c,), dtype, requires_grad=False).detach().abs() + 0.1 if draw(st.booleans()) else None
    kw = dict(weight=weight, ignore_index=ignore, reduction=draw(st.sampled_from(["none", "mean", "sum"])), label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])))

    def ref(a, t):
        w = kw["weight"]
        return F.cross_entropy(a, t, **{**kw, "weight": None if w is None else w.to(a.dtype)})

    return [x, target], (lambda a, t: torch_ops.cross_entropy(a, t, **kw)), ref


class _HeldIn(torch.autograd.Function):
    """t rounded to `dtype` and back, and so is its gradient: a float64 truth that holds an
    intermediate tensor (and its gradient) in the dtype of the computation it models."""

    @staticmethod
    def forward(t, dtype):
        return t.to(dtype).to(t.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.held = inputs[1]

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.held).to(g.dtype), None


def _linear_cross_entropy(draw, dtype):
    """linear_cross_entropy against cross_entropy(linear(x, W, b)): leading dimensions (zero
    rows included), bias or not, ignored targets, every reduction, label smoothing, chunk sizes."""
    lead, h, v = draw(shapes(0, 2)), draw(SIZES), draw(st.sampled_from([0, 1, 2, 3, 5, 8, 13]))
    x, w = tensor(draw, lead + (h,), dtype), tensor(draw, (v, h), dtype)
    b = tensor(draw, (v,), dtype) if draw(st.booleans()) else None
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    ignore = draw(st.sampled_from([-100, 0]))
    target = torch.randint(0, v, lead, generator=g) if v else torch.full(lead, ignore)  # no class: all ignored
    if target.numel() and draw(st.booleans()):
        target.view(-1)[::2] = ignore
    red, ls = draw(st.sampled_from(["none", "mean", "sum"])), draw(st.sampled_from([0.0, 0.1, 0.5]))
    chunk = draw(st.sampled_from([None, 1, 2, 3, 7]))

    def ours(*a):
        return torch_ops.linear_cross_entropy(a[0], a[1], target, a[2] if b is not None else None, ignore_index=ignore, reduction=red, label_smoothing=ls, chunk_size=chunk)

    def ref(*a):  # (the float64 truth holds the logits and their gradient in the dtype, as both computations do)
        logits = F.linear(a[0], a[1], a[2] if b is not None else None).reshape(target.numel(), v)
        if logits.dtype != dtype:
            logits = _HeldIn.apply(logits, dtype)
        loss = F.cross_entropy(logits, target.reshape(-1), ignore_index=ignore, reduction=red, label_smoothing=ls)
        return loss.reshape(target.shape) if red == "none" else loss

    # The gradients sum rounded logit gradients (held in the dtype by both computations) with
    # cancellation: where PyTorch's rounding errors happen to cancel at one element, ours need
    # not, so in float16/bfloat16 ours is judged by its worst error against PyTorch's worst
    # (on average ours is the more accurate: its logit gradients are rounded once, from float).
    return [x, w] + ([b] if b is not None else []), ours, ref, {"tensorwise": True}


def _sdpa(draw, dtype):
    """scaled_dot_product_attention against F's: batch dimensions (0 to 2, broadcast between
    query and key/value), heads (grouped-query or broadcast), lengths (zero included), head
    dimensions, causal, bool or float masks (broadcast shapes, the float one differentiated),
    scale."""
    batch = draw(shapes(0, 2))
    hk = draw(st.sampled_from([1, 2]))
    h = hk * draw(st.sampled_from([1, 2, 3]))
    gqa = h != hk and draw(st.booleans())
    L, S = draw(SIZES), draw(SIZES)
    E, Ev = draw(st.sampled_from([1, 2, 5, 8])), draw(st.sampled_from([1, 3, 8]))
    kv_heads = hk if gqa else draw(st.sampled_from([1, h]))
    kv_batch = tuple(draw(st.sampled_from([1, b])) for b in batch)
    q = tensor(draw, batch + (h, L, E), dtype)
    k = tensor(draw, kv_batch + (kv_heads, S, E), dtype)
    v = tensor(draw, kv_batch + (kv_heads, S, Ev), dtype)
    kind = draw(st.sampled_from(["none", "causal", "bool", "float"]))
    scale = draw(st.sampled_from([None, 0.3]))
    kw = {"scale": scale, "enable_gqa": gqa, "is_causal": kind == "causal"}
    inputs = [q, k, v]
    if kind in ("bool", "float"):
        shape = tuple(draw(st.sampled_from([1, n])) for n in (h, L, S))
        if kind == "bool":
            g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
            kw["attn_mask"] = torch.rand(shape, generator=g) > 0.3
        else:
            inputs.append(tensor(draw, shape, dtype))

    def ours(*a):
        return torch_ops.scaled_dot_product_attention(*a[:3], *a[3:], **kw)

    def ref(*a):
        return F.scaled_dot_product_attention(*a[:3], *a[3:], **kw)

    return inputs, ours, ref


SPECS = {
    "linear": _linear,
    "fused_linear": _fused,
    **{n: _unary(n) for n in ("relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh")},
    **{n: _gated(n) for n in ("glu", "swiglu", "geglu")},
    **{n: _norm(n) for n in ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm")},
    **{n: _softmax(n) for n in ("softmax", "log_softmax")},
    "cross_entropy": _cross_entropy,
    "linear_cross_entropy": _linear_cross_entropy,
    "scaled_dot_product_attention": _sdpa,
}


def _close(got, exp, what, truth=None, computed_in=None, tensorwise=False):
    """Against PyTorch's result in the same dtype, and where PyTorch's own result rounds more
    often than ours (bfloat16/float16 always, e.g. a GEMM and a separate bias add; float32
    when the direct comparison fails, e.g. layer_norm's gradient of a one-element row, where
    ours is exact and PyTorch's is not): each element at least as close to the float64
    computation on the same inputs as PyTorch's, within a factor 2 plus the dtype's tolerance
    (tensorwise: than PyTorch's worst element). computed_in: the dtype whose tolerance applies
    when the computation is less precise than its result's dtype."""
    assert got.shape == exp.shape and got.dtype == exp.dtype, (what, got.shape, exp.shape, got.dtype, exp.dtype)
    dtype = computed_in or got.dtype
    tol = TOL[dtype]
    if truth is None or dtype in (torch.float64, torch.float32):
        try:
            torch.testing.assert_close(got, exp, equal_nan=True, msg=lambda m: f"{what}: {m}", **tol)
            return
        except AssertionError:
            if truth is None or dtype == torch.float64:
                raise
    ours_err = (got.double() - truth).abs()
    torch_err = (exp.double() - truth).abs()
    if tensorwise and torch_err.numel():
        torch_err = torch_err.nan_to_num(0.0).max()
    bound = 2 * torch_err + tol["atol"] + tol["rtol"] * truth.abs()
    bad = ~(ours_err <= bound) & ~(got.isnan() & exp.isnan())
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements further from the float64 result than PyTorch's {dtype} result allows; "
        f"worst: ours {got[bad][0].item()}, torch {exp[bad][0].item()}, float64 {truth[bad][0].item()}"
    )


def _tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("name", list(SPECS))
@FUZZ
@given(data=st.data())
def test_fuzz_against_torch(name, data):
    """Inputs are the floating tensors a spec differentiates (and integer targets, passed as
    they are); outputs one tensor or a tuple."""
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    inputs, ours, ref, *options = SPECS[name](data.draw, dtype)
    options = options[0] if options else {}

    def copy(t, dt=None):  # clone: a dense copy, same values; float64 for the truth
        if not t.is_floating_point():
            return t
        return (t.detach().clone() if dt is None else t.detach().to(dt)).requires_grad_(t.requires_grad)

    ref_inputs = [copy(t) for t in inputs]
    f64_inputs = [copy(t, torch.float64) for t in inputs]
    out, exp, truth = _tuple(ours(*inputs)), _tuple(ref(*ref_inputs)), _tuple(ref(*f64_inputs))
    assert len(out) == len(exp)
    for i, (a, b, t) in enumerate(zip(out, exp, truth)):
        _close(a, b, f"output {i}", t.detach(), **options)
    gs = [torch.randn(e.shape, dtype=torch.float64).to(e.dtype) for e in exp]
    diff = [k for k, t in enumerate(inputs) if t.requires_grad]
    if not diff:
        return
    grads = torch.autograd.grad(out, [inputs[k] for k in diff], gs, allow_unused=True)
    ref_grads = torch.autograd.grad(exp, [ref_inputs[k] for k in diff], gs, allow_unused=True)
    truth_grads = torch.autograd.grad(truth, [f64_inputs[k] for k in diff], [g.double() for g in gs], allow_unused=True)
    for k, a, b, t in zip(diff, grads, ref_grads, truth_grads):
        if b is None:
            assert a is None or not a.any(), f"gradient {k}"
        else:
            assert a is not None, f"gradient {k} missing"
            _close(a, b, f"gradient {k}", t, **options)
