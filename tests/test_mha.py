"""nn.MultiheadAttention: torch_ops.nn.MultiheadAttention against torch.nn.MultiheadAttention
with the same state_dict: outputs, attention weights and gradients over the module's options
(batch_first, need_weights / average_attn_weights, self / cross attention, kdim / vdim, bias,
add_bias_kv, add_zero_attn, key_padding_mask and attn_mask of either kind, the is_causal
hint, unbatched inputs), gradcheck, dropout, errors, state_dict, convert() and
torch.compile."""

import copy
import io

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
from conftest import ALL_DEVICES, TOL

E, H, N, L, S = 8, 2, 3, 5, 7  # embed_dim, num_heads, batch, target and source lengths
KDIM, VDIM = 5, 6


# ----------------------------------------------------------------------------- helpers


def _pair(device, dtype, seed=0, **kwargs):
    """torch's module (every parameter random: the biases start at zero otherwise) and ours
    with its state_dict."""
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(E, kwargs.pop("num_heads", H), device=device, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ref = ref.to(dtype)
    ours = torch_ops.nn.MultiheadAttention(E, ref.num_heads, device=device, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _rand(*shape, device, dtype, requires_grad=True):
    return torch.randn(*shape, device=device, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


def _inputs(kind, batch_first, device, dtype, batched=True, kdim=E, vdim=E):
    """(query, key, value): "self" (one tensor three times), "kv" (key is value) or "cross"."""

    def seq(length, dim):
        if not batched:
            return _rand(length, dim, device=device, dtype=dtype)
        shape = (N, length, dim) if batch_first else (length, N, dim)
        return _rand(*shape, device=device, dtype=dtype)

    if kind == "self":
        x = seq(L, E)
        return x, x, x
    q = seq(L, E)
    if kind == "kv":
        k = seq(S, kdim)
        return q, k, k
    return q, seq(S, kdim), seq(S, vdim)


def _masks(spec, src_len, device, dtype, batched=True, seed=1):
    """key_padding_mask and attn_mask by name: kpm_bool, kpm_float, attn_bool_2d, attn_bool_3d,
    attn_float_2d, attn_float_3d, causal (bool or float upper triangle). Bool masks (True =
    not allowed) never mask source position 0, so that no row is fully masked."""
    g = torch.Generator().manual_seed(seed)
    nb = N if batched else 1
    kpm = attn = None
    for part in spec:
        if part == "kpm_bool":
            kpm = torch.rand(nb, src_len, generator=g) < 0.4
            kpm[:, 0] = False
        elif part == "kpm_float":
            kpm = torch.randn(nb, src_len, generator=g, dtype=torch.float64)
            kpm[:, -1] = float("-inf")
        elif part.startswith("attn_"):
            shape = (L, src_len) if part.endswith("2d") else (nb * H, L, src_len)
            if "bool" in part:
                attn = torch.rand(*shape, generator=g) < 0.4
                attn[..., 0] = False
            else:
                attn = torch.randn(*shape, generator=g, dtype=torch.float64)
                attn[..., 1] = float("-inf")
        elif part == "causal_bool":
            attn = torch.ones(L, src_len, dtype=torch.bool).triu(1)
        elif part == "causal_float":
            attn = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
        else:
            raise ValueError(part)
    kpm = None if kpm is None else kpm.to(device, dtype if kpm.is_floating_point() else torch.bool)
    attn = None if attn is None else attn.to(device, dtype if attn.is_floating_point() else torch.bool)
    if kpm is not None and not batched:
        kpm = kpm[0]
    return kpm, attn


def _detached(tensors, dtype=None):
    """Copies of the input tensors (in dtype) with the same identities (q is k is v stays true)."""
    seen = {}
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen[id(t)] = t.detach().to(dtype or t.dtype, copy=True).requires_grad_(t.requires_grad)
        out.append(seen[id(t)])
    return out


def _unique(tensors):
    seen = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


# (id, constructor kwargs, inputs kind, masks, forward kwargs)
CASES = [
    ("self", {}, "self", (), {}),
    ("cross_kv", {}, "kv", (), {}),
    ("cross", {}, "cross", (), {}),
    ("kdim_vdim", {"kdim": KDIM, "vdim": VDIM}, "cross", ("kpm_bool", "attn_bool_2d"), {}),
    ("kdim_kv", {"kdim": KDIM, "vdim": KDIM}, "kv", (), {}),
    ("no_bias", {"bias": False}, "self", ("attn_float_3d",), {}),
    ("one_head", {"num_heads": 1}, "cross", ("kpm_bool",), {}),
    ("four_heads", {"num_heads": 4}, "self", ("attn_float_2d",), {}),
    ("kpm_bool", {}, "cross", ("kpm_bool",), {}),
    ("kpm_float", {}, "kv", ("kpm_float",), {}),
    ("attn_bool_2d", {}, "cross", ("attn_bool_2d",), {}),
    ("attn_bool_3d", {}, "cross", ("attn_bool_3d",), {}),
    ("attn_float_2d", {}, "kv", ("attn_float_2d",), {}),
    ("attn_float_3d", {}, "kv", ("attn_float_3d",), {}),
    ("both_bool", {}, "cross", ("kpm_bool", "attn_bool_3d"), {}),
    ("both_float", {}, "cross", ("kpm_float", "attn_float_2d"), {}),
    ("bias_kv", {"add_bias_kv": True}, "cross", ("kpm_bool", "attn_bool_2d"), {}),
    ("zero_attn", {"add_zero_attn": True}, "kv", ("kpm_float", "attn_float_3d"), {}),
    ("bias_kv_zero_attn", {"add_bias_kv": True, "add_zero_attn": True}, "self", ("kpm_bool", "attn_bool_3d"), {}),
    ("bias_kv_zero_attn_nomask", {"add_bias_kv": True, "add_zero_attn": True, "bias": False}, "cross", (), {}),
    ("causal_bool", {}, "self", ("causal_bool",), {"is_causal": True}),
    ("causal_float", {}, "self", ("causal_float",), {"is_causal": True}),
    ("causal_kpm", {}, "self", ("causal_bool", "kpm_bool"), {"is_causal": True}),
    ("causal_bias_kv", {"add_bias_kv": True}, "self", ("causal_float",), {"is_causal": True}),
]
WEIGHTS = {
    "avg": {"need_weights": True, "average_attn_weights": True},
    "per_head": {"need_weights": True, "average_attn_weights": False},
    "no_weights": {"need_weights": False},
}


def _src_len(kind):
    return L if kind == "self" else S


def _fwd_bwd(module, qkv, kwargs):
    """[output, weights (when returned), the gradients of the distinct inputs and of every
    parameter] of sum(output * g) + sum(weights * gw); g and gw from a fixed seed, with
    values exact in every dtype (rounded to bfloat16)."""
    out, w = module(*qkv, **kwargs)
    results = [out] if w is None else [out, w]
    gen = torch.Generator().manual_seed(123)
    loss = 0
    for t in results:
        g = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(torch.bfloat16)
        loss = loss + (t * g.to(t.device, t.dtype)).sum()
    leaves = _unique(qkv) + list(module.parameters())
    return results, list(torch.autograd.grad(loss, leaves))


def _run_case(case, device, dtype, batch_first, weights, batched=True, float64_reference=False):
    """Forward and backward of ours and torch's on the same inputs: the lists
    [output, weights?] and [gradients] of each (see _fwd_bwd); with float64_reference, also
    torch's in float64 on the same (rounded) parameters and inputs."""
    _, ctor, kind, mask_spec, fwd = case
    ctor = dict(ctor)
    ref, ours = _pair(device, dtype, batch_first=batch_first, **ctor)
    kdim, vdim = ctor.get("kdim", E), ctor.get("vdim", E)
    qkv = _inputs(kind, batch_first, device, dtype, batched, kdim, vdim)
    kpm, attn = _masks(mask_spec, _src_len(kind), device, dtype, batched)
    kwargs = dict(key_padding_mask=kpm, attn_mask=attn, **WEIGHTS[weights], **fwd)
    outs, grads = _fwd_bwd(ours, qkv, kwargs)
    outs_ref, grads_ref = _fwd_bwd(ref, _detached(qkv), kwargs)
    assert len(outs) == len(outs_ref) == (2 if WEIGHTS[weights]["need_weights"] else 1)
    for a, r in zip(outs + grads, outs_ref + grads_ref):
        assert a.shape == r.shape and a.dtype == r.dtype and a.device == r.device
    if not float64_reference:
        return (outs, grads), (outs_ref, grads_ref)
    ref64 = copy.deepcopy(ref).double()
    qkv64 = _detached(qkv, torch.float64)
    kwargs64 = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in kwargs.items()}
    return (outs, grads), (outs_ref, grads_ref), _fwd_bwd(ref64, qkv64, kwargs64)


def _device_dtype(pairs):
    """pytest params (device, dtype); the CUDA ones skip cleanly without a GPU."""
    cuda_marks = ALL_DEVICES[1].marks
    return [
        pytest.param(d, dt, id=f"{d}-{str(dt).split('.')[-1]}", marks=cuda_marks if d == "cuda" else ())
        for d, dt in pairs
    ]


CPU_CUDA_FP = _device_dtype([(d, dt) for d in ("cpu", "cuda") for dt in (torch.float64, torch.float32)])


# ----------------------------------------------------------------------------- against torch


@pytest.mark.parametrize("device,dtype", CPU_CUDA_FP)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(case, batch_first, weights, device, dtype):
    torch.manual_seed(0)
    (outs, grads), (outs_ref, grads_ref) = _run_case(case, device, dtype, batch_first, weights)
    for a, r in zip(outs + grads, outs_ref + grads_ref):
        torch.testing.assert_close(a, r, **TOL[dtype])


_UNBATCHED_IDS = ("self", "cross_kv", "kdim_vdim", "kpm_float", "attn_bool_3d", "both_bool", "bias_kv_zero_attn", "causal_kpm")
UNBATCHED = [c for c in CASES if c[0] in _UNBATCHED_IDS]


@pytest.mark.parametrize("device,dtype", CPU_CUDA_FP)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("case", UNBATCHED, ids=[c[0] for c in UNBATCHED])
def test_unbatched_matches_torch(case, batch_first, weights, device, dtype):
    """2-D query/key/value, 1-D key_padding_mask, (num_heads, L, S) attn_mask."""
    torch.manual_seed(0)
    (outs, grads), (outs_ref, grads_ref) = _run_case(case, device, dtype, batch_first, weights, batched=False)
    for a, r in zip(outs + grads, outs_ref + grads_ref):
        torch.testing.assert_close(a, r, **TOL[dtype])


REDUCED_CASES = [c for c in CASES if c[0] in ("self", "cross", "kdim_vdim", "both_float", "bias_kv_zero_attn", "causal_kpm")]


REDUCED = _device_dtype([("cpu", torch.bfloat16), ("cuda", torch.float16), ("cuda", torch.bfloat16)])


@pytest.mark.parametrize("device,dtype", REDUCED)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("case", REDUCED_CASES, ids=[c[0] for c in REDUCED_CASES])
def test_reduced_precision(case, weights, device, dtype):
    """bfloat16 / float16. Forward: against torch's module in the same dtype (the roundings of
    the projections, the weights and the attention output are the dtype's in both).
    Gradients: as accurate as torch's own in the dtype, measured against torch's in float64
    on the same (rounded) parameters and inputs (the two attention backwards round
    differently: elementwise they differ by a few ulps of the largest gradients, each no
    further from the float64 result than the other; factor as in tests/test_norm.py)."""
    torch.manual_seed(0)
    (outs, grads), (outs_ref, grads_ref), (_, grads64) = _run_case(
        case, device, dtype, False, weights, float64_reference=True
    )
    for a, r in zip(outs, outs_ref):
        torch.testing.assert_close(a, r, **TOL[dtype])
    for i, (a, r, exact) in enumerate(zip(grads, grads_ref, grads64)):
        err, err_torch = (a.double() - exact).abs().max(), (r.double() - exact).abs().max()
        assert err <= 4 * err_torch + 1e-6, (i, err, err_torch)


def test_fully_masked_rows_as_torch():
    """A batch entry whose keys are all padding: torch's need_weights=False path gives zeros
    (scaled_dot_product_attention's safe softmax), need_weights=True gives NaN (softmax of
    -inf); ours the same in each."""
    ref, ours = _pair("cpu", torch.float64)
    x = _rand(L, N, E, device="cpu", dtype=torch.float64, requires_grad=False)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1] = True
    for need_weights in (False, True):
        out, w = ours(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
        out_ref, w_ref = ref(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
        torch.testing.assert_close(out, out_ref, equal_nan=True)
        if need_weights:
            torch.testing.assert_close(w, w_ref, equal_nan=True)
        else:  # finite gradients, torch's
            grads = torch.autograd.grad(out.sum(), list(ours.parameters()))
            grads_ref = torch.autograd.grad(out_ref.sum(), list(ref.parameters()))
            for a, r in zip(grads, grads_ref):
                torch.testing.assert_close(a, r)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_noncontiguous_inputs(device):
    torch.manual_seed(0)
    ref, ours = _pair(device, torch.float64, batch_first=True)
    q = torch.randn(L, N, 2 * E, device=device, dtype=torch.float64)[..., ::2].transpose(0, 1)
    k = torch.randn(S, E, device=device, dtype=torch.float64).expand(N, S, E)
    for need_weights in (True, False):
        out, _ = ours(q, k, k, need_weights=need_weights)
        torch.testing.assert_close(out, ref(q, k, k, need_weights=need_weights)[0], **TOL[torch.float64])


@pytest.mark.parametrize("sizes", [(0, N, S), (L, 0, S), (L, N, 0)], ids=["L0", "N0", "S0"])
def test_zero_size_dims(sizes):
    tl, nb, sl = sizes
    ref, ours = _pair("cpu", torch.float64)
    q = torch.randn(tl, nb, E, dtype=torch.float64)
    kv = torch.randn(sl, nb, E, dtype=torch.float64)
    for need_weights in (True, False):
        out, w = ours(q, kv, kv, need_weights=need_weights)
        out_ref, w_ref = ref(q, kv, kv, need_weights=need_weights)
        torch.testing.assert_close(out, out_ref, equal_nan=True)
        if need_weights:
            torch.testing.assert_close(w, w_ref, equal_nan=True)


def test_mixed_mask_types_warn_as_torch():
    """A bool key_padding_mask with a float attn_mask: torch's deprecation warning, the same result."""
    ref, ours = _pair("cpu", torch.float64)
    x = _rand(L, N, E, device="cpu", dtype=torch.float64, requires_grad=False)
    kpm, _ = _masks(("kpm_bool",), L, "cpu", torch.float64)
    _, attn = _masks(("attn_float_2d",), L, "cpu", torch.float64)
    for need_weights in (True, False):
        with pytest.warns(UserWarning, match="Support for mismatched key_padding_mask and attn_mask is deprecated"):
            out, _ = ours(x, x, x, key_padding_mask=kpm, attn_mask=attn, need_weights=need_weights)
        with pytest.warns(UserWarning):
            out_ref, _ = ref(x, x, x, key_padding_mask=kpm, attn_mask=attn, need_weights=need_weights)
        torch.testing.assert_close(out, out_ref)


def test_eval_no_grad_matches_torch_fast_path():
    """Under no_grad in eval, torch's module takes its native fast path; ours its own kernels."""
    ref, ours = _pair("cpu", torch.float32, batch_first=True)
    ref.eval(), ours.eval()
    x = torch.randn(N, L, E)
    kpm, _ = _masks(("kpm_bool",), L, "cpu", torch.float32)
    with torch.no_grad():
        for need_weights in (True, False):
            out, w = ours(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
            out_ref, w_ref = ref(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
            torch.testing.assert_close(out, out_ref, **TOL[torch.float32])
            if need_weights:
                torch.testing.assert_close(w, w_ref, **TOL[torch.float32])


# ----------------------------------------------------------------------------- gradcheck


def _functional(module, kwargs, n_inputs):
    """fn(*inputs, *parameters) -> module's output (and weights), and the parameters' copies."""
    names = [n for n, _ in module.named_parameters()]

    def fn(*tensors):
        inputs, params = tensors[:n_inputs], tensors[n_inputs:]
        if n_inputs == 1:  # self-attention
            q = k = v = inputs[0]
        elif n_inputs == 2:  # key is value
            (q, k), v = inputs, inputs[1]
        else:
            q, k, v = inputs
        out, w = torch.func.functional_call(module, dict(zip(names, params)), (q, k, v), kwargs)
        return out if w is None else (out, w)

    return fn, [p.detach().clone().requires_grad_() for p in module.parameters()]


GC_CASES = [
    ("kv_masks_bias_kv", {"add_bias_kv": True}, ("kpm_float", "attn_float_2d"), {}),
    ("kdim_vdim_zero_attn", {"kdim": 3, "vdim": 5, "add_zero_attn": True}, ("kpm_bool", "attn_bool_3d"), {}),
    ("causal", {}, ("causal_float",), {"is_causal": True}),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("need_weights", [False, True], ids=["no_weights", "weights"])
@pytest.mark.parametrize("case", GC_CASES, ids=[c[0] for c in GC_CASES])
def test_gradcheck(device, need_weights, case):
    """float64 gradcheck with respect to the inputs and every parameter, on a tiny config
    (embed_dim 4, 2 heads, batch 2, L 3, S 4; the causal case is self-attention); and
    gradgradcheck where the weights are formed explicitly."""
    _, ctor, mask_spec, fwd = case
    torch.manual_seed(0)
    e, nb, tl = 4, 2, 3
    sl = tl if "is_causal" in fwd else 4
    m = torch_ops.nn.MultiheadAttention(e, 2, device=device, dtype=torch.float64, **ctor)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    kdim, vdim = ctor.get("kdim", e), ctor.get("vdim", e)
    q = torch.randn(tl, nb, e, device=device, dtype=torch.float64, requires_grad=True)
    k = torch.randn(sl, nb, kdim, device=device, dtype=torch.float64, requires_grad=True)
    v = torch.randn(sl, nb, vdim, device=device, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(3)
    kpm = attn = None
    for part in mask_spec:
        if part == "kpm_float":
            kpm = torch.randn(nb, sl, generator=g, dtype=torch.float64).to(device)
        elif part == "kpm_bool":
            kpm = torch.tensor([[False, True, False, False], [False, False, True, True]], device=device)
        elif part == "attn_float_2d":
            attn = torch.randn(tl, sl, generator=g, dtype=torch.float64).to(device)
        elif part == "attn_bool_3d":
            attn = (torch.rand(nb * 2, tl, sl, generator=g) < 0.3).to(device)
            attn[..., 0] = False
        elif part == "causal_float":
            attn = torch.nn.Transformer.generate_square_subsequent_mask(tl, device=device, dtype=torch.float64)
    kwargs = dict(key_padding_mask=kpm, attn_mask=attn, need_weights=need_weights, **fwd)
    if ctor.get("kdim"):
        inputs = (q, k, v)  # cross-attention
    elif "is_causal" in fwd:
        inputs = (q,)  # self-attention: query is key is value
    else:
        inputs = (q, k)  # key is value
    fn, params = _functional(m, kwargs, len(inputs))
    assert gradcheck(fn, (*inputs, *params))
    if need_weights:
        assert gradgradcheck(fn, (*inputs, *params))


def test_gradgradcheck_no_weights():
    """Second derivatives of the scaled_dot_product_attention path (the op's double backward)."""
    torch.manual_seed(0)
    m = torch_ops.nn.MultiheadAttention(4, 2, dtype=torch.float64)
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    kpm = torch.tensor([[False, True, False], [False, False, False]])
    fn, params = _functional(m, dict(key_padding_mask=kpm, need_weights=False), 2)
    assert gradgradcheck(fn, (x, x.detach().clone().requires_grad_(), *params))


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_dropout_with_weights_is_torchs(device):
    """need_weights=True in training: the weights are dropped out with F.dropout on a tensor of
    torch's shape, so with the same seed the outputs and (dropped-out) weights are torch's."""
    ref, ours = _pair(device, torch.float64, dropout=0.3)
    x = _rand(L, N, E, device=device, dtype=torch.float64, requires_grad=False)
    for avg in (True, False):
        torch.manual_seed(5)
        out, w = ours(x, x, x, average_attn_weights=avg)
        torch.manual_seed(5)
        out_ref, w_ref = ref(x, x, x, average_attn_weights=avg)
        torch.testing.assert_close(out, out_ref)
        torch.testing.assert_close(w, w_ref)
    ours.eval()
    out_eval, _ = ours(x, x, x)
    assert not torch.allclose(out, out_eval)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("need_weights", [False, True], ids=["no_weights", "weights"])
def test_dropout_reproducible_and_train_only(device, need_weights):
    _, ours = _pair(device, torch.float32, dropout=0.5, batch_first=True)
    x = torch.randn(N, L, E, device=device, requires_grad=True)

    def run():
        return ours(x, x, x, need_weights=need_weights)[0]

    torch.manual_seed(7)
    a = run()
    torch.manual_seed(7)
    b = run()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = run()  # another draw
    assert not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    ours.eval()
    ref = copy.deepcopy(ours)
    ref.__class__ = torch.nn.MultiheadAttention
    e1, e2 = run(), run()
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    assert not torch.allclose(a, e1)
    torch.testing.assert_close(e1, ref(x, x, x, need_weights=need_weights)[0], **TOL[torch.float32])


# ----------------------------------------------------------------------------- errors


def _error_cases():
    x = torch.randn(L, N, E)
    y = torch.randn(S, N, E)
    return [
        (dict(is_causal=True), (x, x, x), RuntimeError),  # is_causal needs attn_mask
        (dict(attn_mask=torch.zeros(L, L + 1)), (x, x, x), RuntimeError),
        (dict(attn_mask=torch.zeros(N, L, L)), (x, x, x), RuntimeError),
        (dict(attn_mask=torch.zeros(1, 1, L, L)), (x, x, x), AssertionError),
        (dict(attn_mask=torch.zeros(L, L, dtype=torch.int64)), (x, x, x), AssertionError),
        (dict(key_padding_mask=torch.zeros(N, L + 1, dtype=torch.bool)), (x, x, x), AssertionError),
        (dict(key_padding_mask=torch.zeros(N + 1, S, dtype=torch.bool)), (x, y, y), AssertionError),
        (dict(key_padding_mask=torch.zeros(N, dtype=torch.bool)), (x, x, x), AssertionError),
        ({}, (x, y, torch.randn(S + 1, N, E)), AssertionError),
        ({}, (torch.randn(L, N, E + 1), y, y), AssertionError),
        ({}, (x, y[0], y[0]), AssertionError),
        ({}, (x[0, 0], x[0, 0], x[0, 0]), AssertionError),
        (dict(attn_mask=torch.zeros(H + 1, L, L)), (x[:, 0], x[:, 0], x[:, 0]), AssertionError),
    ]


@pytest.mark.parametrize("case", range(len(_error_cases())))
def test_errors_as_torch(case):
    """The exception type and message of torch's module."""
    kwargs, args, exc = _error_cases()[case]
    ref, ours = _pair("cpu", torch.float32)
    with pytest.raises(exc) as e_ref:
        ref(*args, **kwargs)
    with pytest.raises(exc) as e_ours:
        ours(*args, **kwargs)
    assert str(e_ours.value) == str(e_ref.value)


def test_kdim_errors_as_torch():
    ref, ours = _pair("cpu", torch.float32, kdim=KDIM, vdim=VDIM)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, KDIM), torch.randn(S + 1, N, VDIM)
    with pytest.raises(AssertionError) as e_ref:
        ref(q, k, v)
    with pytest.raises(AssertionError) as e_ours:
        ours(q, k, v)
    assert str(e_ours.value) == str(e_ref.value)


def test_nested_inputs_refused():
    _, ours = _pair("cpu", torch.float32, batch_first=True)
    nt = torch.nested.nested_tensor([torch.randn(2, E), torch.randn(3, E)], layout=torch.jagged)
    with pytest.raises(AssertionError, match="NestedTensor"):
        ours(nt, nt, nt)


# ----------------------------------------------------------------------------- module


MODULE_KWARGS = [
    {},
    {"bias": False},
    {"kdim": KDIM, "vdim": VDIM},
    {"add_bias_kv": True, "add_zero_attn": True, "dropout": 0.1, "batch_first": True},
]


@pytest.mark.parametrize("kwargs", MODULE_KWARGS, ids=lambda k: "-".join(k) or "default")
def test_module_is_a_drop_in(kwargs):
    """isinstance, repr, attributes, the same initialisation from the same seed, state_dict both ways."""
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(E, H, **kwargs)
    torch.manual_seed(0)
    ours = torch_ops.nn.MultiheadAttention(E, H, **kwargs)
    assert isinstance(ours, torch.nn.MultiheadAttention)
    assert repr(ours) == repr(ref)
    attrs = ("embed_dim", "kdim", "vdim", "num_heads", "head_dim", "dropout", "batch_first", "add_zero_attn", "_qkv_same_embed_dim")
    for attr in attrs:
        assert getattr(ours, attr) == getattr(ref, attr)
    sd, sd_ref = ours.state_dict(), ref.state_dict()
    assert list(sd) == list(sd_ref)
    for name in sd:
        assert torch.equal(sd[name], sd_ref[name]), name  # the same initialisation
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    # round trip: random torch weights -> ours -> a fresh torch module
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    ours.load_state_dict(ref.state_dict())
    back = torch.nn.MultiheadAttention(E, H, **kwargs)
    back.load_state_dict(ours.state_dict())
    for name, t in back.state_dict().items():
        assert torch.equal(t, ref.state_dict()[name]), name
    ref.eval(), ours.eval()
    bf = kwargs.get("batch_first", False)
    q = torch.randn(N, L, E) if bf else torch.randn(L, N, E)
    k = torch.randn(*((N, S) if bf else (S, N)), kwargs.get("kdim", E))
    v = torch.randn(*k.shape[:-1], kwargs.get("vdim", E))
    torch.testing.assert_close(ours(q, k, v)[0], ref(q, k, v)[0], **TOL[torch.float32])


def test_module_dtype_device_args():
    m = torch_ops.nn.MultiheadAttention(E, H, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    m = torch_ops.nn.MultiheadAttention(E, H, kdim=3, dtype=torch.bfloat16, device="meta")
    assert all(p.dtype == torch.bfloat16 and p.is_meta for p in m.parameters())
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        torch_ops.nn.MultiheadAttention(E, 3)


def test_module_runs_our_kernels():
    _, ours = _pair("cpu", torch.float32)
    x = torch.randn(L, N, E)
    for need_weights, op in ((False, "torch_ops::scaled_dot_product_attention"), (True, "torch_ops::softmax")):
        with torch.profiler.profile() as prof:
            ours(x, x, x, need_weights=need_weights)
        names = {e.name for e in prof.events()}
        assert "torch_ops::linear" in names and op in names, sorted(n for n in names if "torch_ops" in n)
        assert not any("multi_head_attention" in n for n in names)


# ----------------------------------------------------------------------------- convert


class _Block(torch.nn.Module):
    """A small model holding an nn.MultiheadAttention (cross-attention over a memory)."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, E)
        self.attn = torch.nn.MultiheadAttention(E, H, batch_first=True, add_bias_kv=True)
        self.norm = torch.nn.LayerNorm(E)

    def forward(self, x, memory, mask):
        h = self.inp(x)
        a, w = self.attn(h, memory, memory, key_padding_mask=mask)
        return self.norm(h + a), w


class _KeepsForward(torch.nn.MultiheadAttention):
    """A subclass that keeps nn.MultiheadAttention's forward: convert() gives it ours."""

    def _reset_parameters(self):
        super()._reset_parameters()


class _OwnForward(torch.nn.MultiheadAttention):
    def forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs)


def test_convert_custom_model():
    torch.manual_seed(0)
    model = _Block().double()
    x = torch.randn(N, L, 4, dtype=torch.float64)
    memory = torch.randn(N, S, E, dtype=torch.float64)
    mask = torch.zeros(N, S, dtype=torch.bool)
    mask[0, 3:] = True
    ref = copy.deepcopy(model)
    params = dict(model.named_parameters())
    _, replaced = torch_ops.nn.convert(model, report=True)
    assert ("attn", "MultiheadAttention") in replaced
    assert type(model.attn) is torch_ops.nn.MultiheadAttention
    assert all(p is params[n] for n, p in model.named_parameters()), "the same parameter tensors"
    assert model.state_dict().keys() == ref.state_dict().keys()
    for training in (True, False):
        model.train(training), ref.train(training)
        out, w = model(x, memory, mask)
        out_ref, w_ref = ref(x, memory, mask)
        torch.testing.assert_close(out, out_ref)
        torch.testing.assert_close(w, w_ref)
    out.sum().backward()
    out_ref.sum().backward()
    for (n, p), p_ref in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, msg=n)
    assert torch_ops.nn.convert(model, report=True)[1] == []


def test_convert_subclasses_and_pickle():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"keeps": _KeepsForward(E, H), "own": _OwnForward(E, H)}).double()
    x = torch.randn(L, N, E, dtype=torch.float64)
    before = {k: m(x, x, x, need_weights=False)[0] for k, m in model.items()}
    _, replaced = torch_ops.nn.convert(model, report=True)
    names = [n for n, _ in replaced]
    assert "keeps" in names and "own" not in names
    assert isinstance(model["keeps"], _KeepsForward)
    assert type(model["keeps"]).forward is torch_ops.nn.MultiheadAttention.forward
    assert type(model["own"]) is _OwnForward
    for k, m in model.items():
        for need_weights in (False, True):
            torch.testing.assert_close(m(x, x, x, need_weights=need_weights)[0], before[k])
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert type(loaded["keeps"]) is type(model["keeps"])
    torch.testing.assert_close(loaded["keeps"](x, x, x)[0], before["keeps"])


@pytest.mark.parametrize("norm_first", [False, True])
def test_convert_transformer_layers(norm_first):
    """nn.TransformerEncoderLayer / DecoderLayer call their attention modules with
    need_weights=False (and is_causal with a causal mask): identical outputs and gradients
    after convert(). (In eval under no_grad the encoder layer may take torch's fused fast
    path, which does not call the attention module at all; see the last check.)"""
    torch.manual_seed(0)
    enc = torch.nn.TransformerEncoderLayer(E, H, 16, dropout=0.0, batch_first=True, norm_first=norm_first).double()
    dec = torch.nn.TransformerDecoderLayer(E, H, 16, dropout=0.0, batch_first=True, norm_first=norm_first).double()
    x = torch.randn(N, L, E, dtype=torch.float64)
    tgt = torch.randn(N, L, E, dtype=torch.float64)
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1, 3:] = True
    refs = copy.deepcopy(enc), copy.deepcopy(dec)
    torch_ops.nn.convert(enc), torch_ops.nn.convert(dec)
    assert type(enc.self_attn) is torch_ops.nn.MultiheadAttention
    assert type(dec.self_attn) is type(dec.multihead_attn) is torch_ops.nn.MultiheadAttention

    def run(e, d):
        mem = e(x, src_mask=causal, src_key_padding_mask=kpm, is_causal=True)
        return mem, d(tgt, mem, tgt_mask=causal, memory_key_padding_mask=kpm, tgt_is_causal=True)

    outs, outs_ref = run(enc, dec), run(*refs)
    for a, r in zip(outs, outs_ref):
        torch.testing.assert_close(a, r)
    (outs[0].sum() + outs[1].sum()).backward()
    (outs_ref[0].sum() + outs_ref[1].sum()).backward()
    for m, r in zip((enc, dec), refs):
        for (n, p), p_ref in zip(m.named_parameters(), r.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, msg=n)
    enc.eval(), refs[0].eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x, src_key_padding_mask=kpm), refs[0](x, src_key_padding_mask=kpm))


# ----------------------------------------------------------------------------- compile


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("need_weights", [False, True], ids=["no_weights", "weights"])
@pytest.mark.parametrize("backend,dynamic", [("aot_eager", False), ("aot_eager", True), ("inductor", False)])
def test_compile_fullgraph(device, need_weights, backend, dynamic):
    """torch.compile(module, fullgraph=True): forward and backward as eager torch's, for two
    sets of sequence lengths (with dynamic=True, one graph for both)."""
    torch._dynamo.reset()
    ref, ours = _pair(device, torch.float32, batch_first=True, add_bias_kv=True)
    compiled = torch.compile(ours, fullgraph=True, backend=backend, dynamic=dynamic)
    g = torch.Generator().manual_seed(0)
    for tl, sl in ((5, 7), (6, 9)):
        kpm = torch.rand(N, sl, generator=g) < 0.3
        attn = torch.rand(tl, sl, generator=g) < 0.3
        kpm[:, 0] = attn[:, 0] = False
        kpm, attn = kpm.to(device), attn.to(device)
        q = torch.randn(N, tl, E, device=device, requires_grad=True)
        kv = torch.randn(N, sl, E, device=device, requires_grad=True)
        q_ref, kv_ref = q.detach().clone().requires_grad_(), kv.detach().clone().requires_grad_()
        kwargs = dict(key_padding_mask=kpm, attn_mask=attn, need_weights=need_weights)
        got = compiled(q, kv, kv, **kwargs)
        exp = ref(q_ref, kv_ref, kv_ref, **kwargs)
        loss, loss_ref = 0, 0
        for a, r in zip(got, exp):
            if r is None:
                assert a is None
                continue
            torch.testing.assert_close(a, r, **TOL[torch.float32])
            gr = torch.randn_like(r)
            loss, loss_ref = loss + (a * gr).sum(), loss_ref + (r * gr).sum()
        leaves, leaves_ref = [q, kv, *ours.parameters()], [q_ref, kv_ref, *ref.parameters()]
        for a, r in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(loss_ref, leaves_ref)):
            torch.testing.assert_close(a, r, **TOL[torch.float32])
