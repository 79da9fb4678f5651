"""The attention family: scaled_dot_product_attention against PyTorch (masks, causal, GQA,
scale, broadcasting, dtypes, edge cases), gradcheck and gradgradcheck (dropout included),
dropout semantics, what autograd saves, opcheck, torch.compile, errors and the Function
class. MultiheadAttention is tests/test_mha.py."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
import torch_ops.autograd as AF
from conftest import ALL_DEVICES, TOL, device_dtype_params

SDPA = torch_ops.scaled_dot_product_attention


def _rand(*shape, device="cpu", dtype=torch.float32, grad=True):
    return torch.randn(*shape, device=device, dtype=torch.float64).to(dtype).requires_grad_(grad)


# (q shape, k shape, v shape, kwargs builder) — the builder makes the mask on a device.
def _cases():
    def none(device):
        return {}

    def causal(device):
        return {"is_causal": True}

    def bool_mask(shape):
        def make(device):
            g = torch.Generator().manual_seed(3)
            m = torch.rand(shape, generator=g) > 0.3
            return {"attn_mask": m.to(device)}

        return make

    def float_mask(shape):
        def make(device):
            g = torch.Generator().manual_seed(4)
            return {"attn_mask": torch.randn(shape, generator=g, dtype=torch.float64).to(device)}

        return make

    return {
        "plain": ((2, 3, 17, 8), (2, 3, 23, 8), (2, 3, 23, 8), none),
        "tiles": ((1, 2, 130, 16), (1, 2, 1100, 16), (1, 2, 1100, 12), none),  # several query and key tiles
        # several 256-row query tiles of the backward with ragged ends, keys over two tiles
        "tiles-rows": ((1, 1, 530, 8), (1, 1, 300, 8), (1, 1, 300, 8), float_mask((530, 300))),
        "causal-rows": ((1, 2, 520, 8), (1, 2, 520, 8), (1, 2, 520, 8), causal),
        "causal-square": ((2, 2, 70, 8), (2, 2, 70, 8), (2, 2, 70, 8), causal),
        "causal-tall": ((1, 2, 90, 8), (1, 2, 33, 8), (1, 2, 33, 8), causal),
        "causal-wide": ((1, 2, 33, 8), (1, 2, 600, 8), (1, 2, 600, 8), causal),
        "bool-2d": ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 8), bool_mask((9, 11))),
        "bool-keypad": ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 8), bool_mask((2, 1, 1, 11))),
        "float-4d": ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 5), float_mask((2, 3, 9, 11))),
        "float-bcast": ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 8), float_mask((1, 3, 1, 11))),
        "scale": ((2, 3, 9, 8), (2, 3, 11, 8), (2, 3, 11, 8), lambda d: {"scale": 0.37}),
        "gqa": ((2, 6, 9, 8), (2, 2, 11, 8), (2, 2, 11, 8), lambda d: {"enable_gqa": True}),
        "gqa-causal": ((1, 4, 66, 8), (1, 1, 66, 8), (1, 1, 66, 8), lambda d: {"enable_gqa": True, "is_causal": True}),
        "bcast-heads": ((2, 4, 9, 8), (2, 1, 11, 8), (2, 1, 11, 8), none),
        "bcast-batch": ((3, 2, 9, 8), (1, 2, 11, 8), (3, 2, 11, 8), none),
        "3d": ((4, 9, 8), (4, 11, 8), (4, 11, 6), none),
        "2d": ((9, 8), (11, 8), (11, 8), causal),
        "5d": ((2, 2, 2, 9, 8), (2, 2, 2, 11, 8), (2, 2, 2, 11, 8), float_mask((9, 11))),
        "head-dim-1": ((1, 1, 5, 1), (1, 1, 7, 1), (1, 1, 7, 3), none),
    }


CASES = _cases()


def _reference(q, k, v, kw):
    """PyTorch's result in float64 (the exact answer the dtypes are judged against)."""
    kw64 = dict(kw)
    if "attn_mask" in kw and kw["attn_mask"].is_floating_point():
        kw64["attn_mask"] = kw["attn_mask"].double()
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kw64)


def _err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_matches_torch(device, dtype, case):
    qs, ks, vs, make_kw = CASES[case]
    torch.manual_seed(0)
    q, k, v = (_rand(*s, device=device, dtype=dtype) for s in (qs, ks, vs))
    kw = make_kw(device)
    if "attn_mask" in kw and kw["attn_mask"].is_floating_point():
        kw["attn_mask"] = kw["attn_mask"].to(dtype)
    ours = SDPA(q, k, v, **kw)
    theirs = F.scaled_dot_product_attention(q, k, v, **kw)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    go = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, (q, k, v), go)
    g_theirs = torch.autograd.grad(theirs, (q, k, v), go)
    if dtype == torch.float64:
        torch.testing.assert_close(ours, theirs, **TOL[dtype])
        for a, b in zip(g_ours, g_theirs):
            torch.testing.assert_close(a, b, **TOL[dtype])
        return
    # Lower precision: no further from the float64 answer than PyTorch's own kernel is
    # (twice its error, plus one unit of the dtype's tolerance for near-exact cases).
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = _reference(qd, kd, vd, kw)
    g_ref = torch.autograd.grad(ref, (qd, kd, vd), go.double())
    slack = TOL[dtype]["atol"]
    assert _err(ours, ref) <= 2 * _err(theirs, ref) + slack
    for a, b, r in zip(g_ours, g_theirs, g_ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert _err(a, r) <= 2 * _err(b, r) + slack * max(1.0, r.abs().max().item())


def test_sdpa_float_mask_gradient_matches_torch():
    for shape in ((2, 3, 9, 11), (1, 3, 1, 11), (9, 11), (2, 1, 9, 1)):
        q, k, v = _rand(2, 3, 9, 8, dtype=torch.float64), _rand(2, 3, 11, 8, dtype=torch.float64), _rand(2, 3, 11, 8, dtype=torch.float64)
        m = _rand(*shape, dtype=torch.float64)
        ours = SDPA(q, k, v, attn_mask=m)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(ours, theirs)
        go = torch.randn_like(ours)
        for a, b in zip(torch.autograd.grad(ours, (q, k, v, m), go), torch.autograd.grad(theirs, (q, k, v, m), go)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_sdpa_fully_masked_rows_and_empty_inputs(device):
    d = dict(device=device, dtype=torch.float64)
    q, k, v = _rand(1, 2, 4, 8, **d), _rand(1, 2, 6, 8, **d), _rand(1, 2, 6, 8, **d)
    m = torch.ones(4, 6, dtype=torch.bool, device=device)
    m[1] = False  # row 1 attends to nothing: output 0, no gradient (as PyTorch)
    fm = torch.zeros(4, 6, **d)
    fm[2] = float("-inf")
    for mask in (m, fm):
        ours, theirs = SDPA(q, k, v, attn_mask=mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, theirs)
        go = torch.randn_like(ours)
        for a, b in zip(torch.autograd.grad(ours, (q, k, v), go), torch.autograd.grad(theirs, (q, k, v), go)):
            torch.testing.assert_close(a, b)
    # Empty sequences and batches; head dimensions of 0 (the tile products of depth 0 or of
    # no columns; with and without a mask; a finite scale here: PyTorch's default
    # 1 / sqrt(0) makes its gradients 0 * inf).
    zmask = torch.zeros(3, 5, **d)
    for qs, ks, vs, kw in (((2, 3, 4), (2, 0, 4), (2, 0, 5), {}), ((2, 0, 4), (2, 3, 4), (2, 3, 5), {}),
                           ((0, 3, 4), (0, 5, 4), (0, 5, 2), {}), ((2, 3, 0), (2, 5, 0), (2, 5, 4), {"scale": 0.5}),
                           ((2, 3, 0), (2, 5, 0), (2, 5, 4), {"scale": 0.5, "attn_mask": zmask}),
                           ((2, 3, 4), (2, 5, 4), (2, 5, 0), {}), ((2, 3, 4), (2, 5, 4), (2, 5, 0), {"attn_mask": zmask})):  # fmt: skip
        q, k, v = _rand(*qs, **d), _rand(*ks, **d), _rand(*vs, **d)
        ours, theirs = SDPA(q, k, v, **kw), F.scaled_dot_product_attention(q, k, v, **kw)
        torch.testing.assert_close(ours, theirs)
        go = torch.randn_like(ours)
        for a, b in zip(torch.autograd.grad(ours, (q, k, v), go), torch.autograd.grad(theirs, (q, k, v), go)):
            torch.testing.assert_close(a, b)


def test_sdpa_kernels_every_isa(cpu_isa):
    torch.manual_seed(1)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        q, k, v = _rand(2, 4, 75, 16, dtype=dtype), _rand(2, 2, 530, 16, dtype=dtype), _rand(2, 2, 530, 9, dtype=dtype)
        for kw in ({}, {"is_causal": True}):
            kw["enable_gqa"] = True
            ours = SDPA(q, k, v, **kw)
            go = torch.randn_like(ours)
            g = torch.autograd.grad(ours, (q, k, v), go)
            qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
            ref = _reference(qd, kd, vd, kw)
            g_ref = torch.autograd.grad(ref, (qd, kd, vd), go.double())
            tol = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2}[dtype]
            assert _err(ours, ref) <= tol
            for a, r in zip(g, g_ref):
                assert _err(a, r) <= tol * max(1.0, r.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_sdpa_cpu_forward_tiles(dtype):
    """The CPU forward's own tile products and its masking of transposed score tiles, at sizes
    that cross every boundary of the tiles (64 query rows, 256 keys) and of the micro-tiles
    (6 rows, 2 vectors of columns), GQA included: no mask (the column max from the product),
    causal (the diagonal tiles), a full float mask (gathered per query row), a key-padding
    mask (one row broadcast over the queries), and dropout with p -> 0 against none. Fewer
    query rows than half a micro-tile's columns (decoding) go row by row: L = 1 and 3, with
    head dims that leave vector tails."""
    torch.manual_seed(2)
    for L, S, E, Ev in ((1, 1, 3, 1), (1, 300, 20, 12), (3, 300, 20, 12), (5, 7, 8, 16), (63, 257, 24, 17),
                        (65, 256, 16, 40), (130, 600, 32, 64), (300, 70, 8, 9)):  # fmt: skip
        q, k, v = _rand(2, 4, L, E, dtype=dtype, grad=False), _rand(2, 2, S, E, dtype=dtype, grad=False), _rand(2, 2, S, Ev, dtype=dtype, grad=False)
        pad = torch.rand(2, 1, 1, S) > 0.2
        pad[..., 0] = True  # every row attends to something
        kws = [{}, {"is_causal": True}, {"attn_mask": torch.ones(L, S, dtype=torch.bool).tril()},
               {"attn_mask": torch.randn(2, 4, L, S, dtype=torch.float64).to(dtype)}, {"attn_mask": pad}]  # fmt: skip
        tol = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2}[dtype]
        for kw in kws:
            kw["enable_gqa"] = True
            ref = _reference(q, k, v, kw)
            assert _err(SDPA(q, k, v, **kw), ref) <= tol, (L, S, E, Ev, list(kw))
        # dropout's per-element factors on the transposed tile: p = 1e-15 keeps everything
        # (scaled by 1 / (1 - p)), so it must give the answer without dropout.
        got = SDPA(q, k, v, dropout_p=1e-15, enable_gqa=True)
        assert _err(got, _reference(q, k, v, {"enable_gqa": True})) <= tol


def test_sdpa_noncontiguous_inputs():
    q = _rand(2, 9, 3, 8).transpose(1, 2)  # (B, L, H, E) -> (B, H, L, E), as MultiheadAttention makes it
    k = _rand(2, 11, 3, 8).transpose(1, 2)
    v = _rand(2, 3, 16, 22)[..., ::2].transpose(-1, -2)
    ours, theirs = SDPA(q, k, v), F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ours, theirs, **TOL[torch.float32])


def test_sdpa_4d_inputs_reach_the_attention_node_without_views():
    """4-D inputs of one batch size and head count (GQA included) need no reshaping: the
    output's node takes the inputs directly (a view of an input that requires grad costs a
    node in the forward and a call in the backward). Other shapes are reshaped, and still
    match PyTorch (the shape cases above)."""
    for k_heads, gqa in ((3, False), (1, True)):
        q, k, v = _rand(2, 3, 5, 8), _rand(2, k_heads, 7, 8), _rand(2, k_heads, 7, 4)
        out = SDPA(q, k, v, enable_gqa=gqa)
        nodes = [f for f, _ in out.grad_fn.next_functions if f is not None]
        assert [type(f).__name__ for f in nodes] == ["AccumulateGrad"] * 3, out.grad_fn.next_functions
        assert {id(f.variable) for f in nodes} == {id(q), id(k), id(v)}
    out = SDPA(_rand(5, 8), _rand(7, 8), _rand(7, 4))  # 2-D: lifted to 4-D and back
    assert out.shape == (5, 4)


# ----------------------------------------------------------------------------- gradients


def _grad_cases(device):
    d = dict(device=device, dtype=torch.float64)
    mask = torch.randn(1, 2, 4, 5, **d, requires_grad=True)
    bmask = torch.rand(4, 5, device=device) > 0.3
    return {
        "plain": ((1, 2, 4, 3), (1, 2, 5, 3), (1, 2, 5, 2), {}),
        "causal": ((1, 2, 5, 3), (1, 2, 4, 3), (1, 2, 4, 3), {"is_causal": True}),
        "float-mask": ((1, 2, 4, 3), (1, 2, 5, 3), (1, 2, 5, 3), {"attn_mask": mask}),
        "bool-mask": ((1, 2, 4, 3), (1, 2, 5, 3), (1, 2, 5, 3), {"attn_mask": bmask}),
        "gqa": ((1, 4, 3, 3), (1, 2, 4, 3), (1, 2, 4, 2), {"enable_gqa": True, "scale": 0.8}),
    }


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", ["plain", "causal", "float-mask", "bool-mask", "gqa"])
def test_sdpa_gradcheck_gradgradcheck(device, case):
    torch.manual_seed(2)
    qs, ks, vs, kw = _grad_cases(device)[case]
    q, k, v = (_rand(*s, device=device, dtype=torch.float64) for s in (qs, ks, vs))
    inputs = (q, k, v) + ((kw["attn_mask"],) if "attn_mask" in kw and kw["attn_mask"].requires_grad else ())
    rest = {a: b for a, b in kw.items() if not (a == "attn_mask" and b.requires_grad)}

    def fn(q, k, v, *m):
        return SDPA(q, k, v, *m, **rest)

    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_function_class_and_dropout_gradcheck_gradgradcheck(device):
    """The core op through AttentionFunction, dropout on (a fixed seed: the mask is the same
    in every call, regenerated in the backward and in the double backward)."""
    torch.manual_seed(3)
    d = dict(device=device, dtype=torch.float64)
    q, k, v = _rand(1, 2, 4, 3, **d), _rand(1, 1, 6, 3, **d), _rand(1, 1, 6, 2, **d)
    m = torch.randn(1, 2, 4, 6, **d, requires_grad=True)
    seed = torch.tensor(1234)
    for args in ((q, k, v), (q, k, v, m)):
        fn = lambda *a: AF.AttentionFunction.apply(*a, dropout_p=0.3, seed=seed)  # noqa: E731
        assert gradcheck(fn, args)
        assert gradgradcheck(fn, args)
    # the dispatcher op's own autograd (C++), same seed: same values as the Function class
    out = torch.ops.torch_ops.attention(q, k, v, m, 0.3, False, 0.5, seed)
    torch.testing.assert_close(out, AF.AttentionFunction.apply(q, k, v, m, dropout_p=0.3, scale=0.5, seed=seed))
    assert gradcheck(lambda *a: torch.ops.torch_ops.attention(*a, 0.3, False, 0.5, seed), (q, k, v, m))
    assert gradgradcheck(lambda *a: torch.ops.torch_ops.attention(*a, 0.3, False, 0.5, seed), (q, k, v, m))


def test_third_derivative_matches_torch():
    torch.manual_seed(4)
    q, k, v = _rand(1, 1, 3, 2, dtype=torch.float64), _rand(1, 1, 4, 2, dtype=torch.float64), _rand(1, 1, 4, 2, dtype=torch.float64)

    def third(fn):
        out = fn(q, k, v).pow(2).sum()
        (g,) = torch.autograd.grad(out, q, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), k, create_graph=True)
        return torch.autograd.grad(gg.sum(), (q, k, v))

    def math_sdpa(q, k, v):  # PyTorch's SDPA kernels have no double backward: the formula
        return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1) @ v

    for a, b in zip(third(SDPA), third(math_sdpa)):
        torch.testing.assert_close(a, b)


def test_autograd_saves_no_score_matrix():
    """Memory-efficient: what the forward saves is O(L + S) per head (inputs, output, lse)."""
    L = S = 256
    q, k, v = _rand(1, 2, L, 16), _rand(1, 2, S, 16), _rand(1, 2, S, 16)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = SDPA(q, k, v, is_causal=True)
    assert sizes and max(sizes) < L * S
    out.sum().backward()
    assert q.grad is not None and k.grad is not None and v.grad is not None


# ----------------------------------------------------------------------------- dropout


def test_dropout_is_seeded_and_regenerated():
    q, k = _rand(2, 2, 8, 4, grad=False), _rand(2, 2, 40, 4, grad=False)
    v = torch.eye(40).expand(2, 2, 40, 40).contiguous()  # out = the attention weights, dropped
    p = 0.25
    torch.manual_seed(7)
    w1 = SDPA(q, k, v, dropout_p=p)
    torch.manual_seed(7)
    w2 = SDPA(q, k, v, dropout_p=p)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)  # reproducible under torch.manual_seed
    w3 = SDPA(q, k, v, dropout_p=p)
    assert not torch.equal(w1, w3)  # a new call draws a new mask
    probs = F.scaled_dot_product_attention(q, k, v)
    kept = w1 != 0
    frac = 1 - kept.double().mean().item()
    assert abs(frac - p) < 0.04, frac  # 5120 weights: p within ~5 standard deviations
    torch.testing.assert_close(w1[kept], (probs / (1 - p))[kept])  # kept weights scaled by 1 / (1 - p)
    # p = 1 drops everything (as F.dropout)
    torch.testing.assert_close(SDPA(q, k, v, dropout_p=1.0), torch.zeros(2, 2, 8, 40))


@pytest.mark.parametrize("L", [6, 2])  # CPU: L = 2 takes the forward's row-by-row path, the backward's tiles
def test_dropout_backward_uses_the_forward_mask(L):
    torch.manual_seed(8)
    q, k, v = _rand(1, 2, L, 4, dtype=torch.float64), _rand(1, 2, 9, 4, dtype=torch.float64), _rand(1, 2, 9, 3, dtype=torch.float64)
    seed = torch.tensor(99)
    out = torch.ops.torch_ops.scaled_dot_product_attention(q, k, v, None, 0.4, False, seed=seed)
    # the same result written out: weights * keep / (1 - p), with the kernels' own mask
    z = torch.ops.torch_ops.attention(q.detach(), k.detach(), torch.eye(9, dtype=torch.float64).expand(1, 2, 9, 9), None, 0.4, False, 0.5, seed)
    w = torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1)
    keep = (z != 0).double() / 0.6
    ref = (w * keep) @ v
    torch.testing.assert_close(out, ref)
    go = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), go), torch.autograd.grad(ref, (q, k, v), go)):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- CUDA: float16 / bfloat16

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# (B, H, Hk, L, S, E, Ev, options). float16 / bfloat16 with head dimensions that are multiples
# of 8 up to 128 run on the tensor-core kernels (cuda/attention_tc.cu, compute capability 8.0+):
# 64-row tiles with ragged ends, masks, GQA, dropout; the last two take the warp-per-row
# kernels (a head dimension that is not a multiple of 8, one above 128).
TC_CASES = {
    "d32-causal": (2, 4, 4, 200, 200, 32, 32, {"is_causal": True}),
    "d64-gqa-ragged": (1, 8, 2, 130, 77, 64, 64, {}),
    "d64-dropout-causal-gqa": (2, 4, 2, 150, 150, 64, 64, {"is_causal": True, "dropout_p": 0.2}),
    "d128": (1, 2, 2, 257, 300, 128, 128, {}),
    "d128-causal-tall": (1, 2, 1, 300, 100, 128, 128, {"is_causal": True}),
    "d96-ev48-float-mask": (2, 2, 2, 90, 140, 96, 48, {"mask": "float"}),
    "d64-bool-mask-empty-rows": (1, 3, 3, 70, 65, 64, 64, {"mask": "bool", "dropout_p": 0.1}),
    "d8-ev16": (2, 2, 1, 33, 90, 8, 16, {}),
    "d20-warp-path": (1, 2, 2, 40, 50, 20, 20, {"is_causal": True}),
    "d136-warp-path": (1, 2, 1, 30, 40, 136, 40, {"dropout_p": 0.1, "mask": "float"}),
}


def _tc_problem(case, dtype):
    B, H, Hk, L, S, E, Ev, opt = TC_CASES[case]
    dev = "cuda"
    torch.manual_seed(0)
    q, k, v = _rand(B, H, L, E, device=dev, dtype=dtype), _rand(B, Hk, S, E, device=dev, dtype=dtype), _rand(B, Hk, S, Ev, device=dev, dtype=dtype)
    mask = None
    if opt.get("mask") == "float":  # float32, -inf holes, a row that attends to nothing
        mask = torch.randn(B, H, L, S, device=dev)
        mask[torch.rand_like(mask) < 0.2] = float("-inf")
        mask[:, :, 3] = float("-inf")
        mask.requires_grad_()
    elif opt.get("mask") == "bool":
        mask = torch.rand(B, 1, L, S, device=dev) > 0.4
        mask[:, :, 5] = False
    kw = dict(dropout_p=opt.get("dropout_p", 0.0), is_causal=opt.get("is_causal", False), scale=1.3 / E**0.5)
    return q, k, v, mask, kw


def _tc_run(q, k, v, mask, kw, seed):
    return torch.ops.torch_ops.scaled_dot_product_attention(
        q, k, v, mask, kw["dropout_p"], kw["is_causal"], scale=kw["scale"], enable_gqa=True, seed=seed)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", list(TC_CASES))
def test_cuda_reduced_precision_against_float64(case, dtype):
    q, k, v, mask, kw = _tc_problem(case, dtype)
    B, H, L, S, Hk = q.size(0), q.size(1), q.size(2), k.size(2), k.size(1)
    seed = torch.tensor(1234)
    ours = _tc_run(q, k, v, mask, kw, seed)
    go = torch.randn_like(ours)
    wrt = (q, k, v) + ((mask,) if mask is not None and mask.requires_grad else ())
    g = torch.autograd.grad(ours, wrt, go)
    # float64 reference on the same device; the dropout mask read off the kernels (v = I).
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    md = mask.detach().double().requires_grad_() if mask is not None and mask.is_floating_point() else None
    G = H // Hk
    kx, vx = kd.repeat_interleave(G, 1), vd.repeat_interleave(G, 1)
    s = qd @ kx.transpose(-1, -2) * kw["scale"]
    if md is not None:
        s = s + md
    elif mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    if kw["is_causal"]:
        s = s.masked_fill(torch.ones(L, S, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    empty = (s == float("-inf")).all(-1, keepdim=True)
    P = torch.softmax(s.masked_fill(empty, 0.0), -1).masked_fill(empty, 0.0)
    if kw["dropout_p"] > 0:
        eye = torch.eye(S, dtype=torch.float64, device=s.device).expand(B, Hk, S, S)
        w = torch.ops.torch_ops.scaled_dot_product_attention(qd.detach(), kd.detach(), eye, None, kw["dropout_p"], False,
                                                             scale=kw["scale"], enable_gqa=True, seed=seed)
        P = P * ((w != 0).double() / (1 - kw["dropout_p"]))
    ref = P @ vx
    g_ref = torch.autograd.grad(ref, (qd, kd, vd) + ((md,) if md is not None else ()), go.double())
    tol = {torch.float16: 4e-3, torch.bfloat16: 2.5e-2}[dtype]
    assert _err(ours, ref) <= tol * max(1.0, ref.abs().max().item())
    for name, a, r in zip(("q", "k", "v", "mask"), g, g_ref):
        assert a.shape == r.shape
        assert torch.isfinite(a).all(), name
        assert _err(a, r) <= tol * max(1.0, r.abs().max().item()), name


@needs_cuda
@pytest.mark.parametrize("case", ["d64-dropout-causal-gqa", "d128", "d96-ev48-float-mask"])
def test_cuda_reduced_precision_deterministic(case):
    q, k, v, mask, kw = _tc_problem(case, torch.bfloat16)
    seed = torch.tensor(5)
    runs = []
    for _ in range(2):
        out = _tc_run(q, k, v, mask, kw, seed)
        wrt = (q, k, v) + ((mask,) if mask is not None and mask.requires_grad else ())
        runs.append((out,) + torch.autograd.grad(out, wrt, torch.ones_like(out)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    d = dict(device=device, dtype=torch.float64)
    ops = torch.ops.torch_ops
    q, k, v = _rand(2, 4, 5, 3, **d), _rand(2, 2, 6, 3, **d), _rand(2, 2, 6, 2, **d)
    m = torch.randn(2, 1, 5, 6, **d, requires_grad=True)
    out, lse = ops.attention_forward(q.detach(), k.detach(), v.detach(), m.detach(), 0.0, False, 0.5, None)
    seed = torch.tensor(5)
    return [
        (ops.attention.default, (q, k, v, None, 0.0, False, 0.5, None)),
        (ops.attention.default, (q, k, v, m, 0.0, False, 0.5, None)),
        (ops.attention.default, (q, k, v, None, 0.2, True, 0.7, seed)),
        (ops.attention_forward.default, (q.detach(), k.detach(), v.detach(), None, 0.0, True, 0.5, None)),
        (ops.attention_backward.default, (torch.randn_like(out), q.detach(), k.detach(), v.detach(), m.detach(), out, lse, 0.0, False, 0.5, None, [True, True, True, True])),
        (ops.attention_backward.default, (torch.randn_like(out), q.detach(), k.detach(), v.detach(), None, out, lse, 0.0, False, 0.5, None, [True, False, True, False])),
        (ops.scaled_dot_product_attention.default, (q[:, :2], k, v)),
    ]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_forward_backward(device, dynamic):
    torch._dynamo.reset()

    def fn(q, k, v, m):
        return SDPA(q, k, v, attn_mask=m).sum() + SDPA(q, k, v, is_causal=True, scale=0.3).pow(2).sum()

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (5, 7):
        q, k, v = (_rand(2, 2, n, 4, device=device, dtype=torch.float64) for _ in range(3))
        m = torch.rand(n, n, device=device) > 0.2
        refs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out, ref = compiled(q, k, v, m), fn(*refs, m)
        torch.testing.assert_close(out, ref)
        out.backward()
        ref.backward()
        for a, b in zip((q, k, v), refs):
            torch.testing.assert_close(a.grad, b.grad)


def test_compile_inductor_with_dropout():
    torch._dynamo.reset()
    q, k, v = (_rand(1, 2, 6, 4) for _ in range(3))
    compiled = torch.compile(lambda a, b, c: SDPA(a, b, c, dropout_p=0.2), fullgraph=True)
    torch.manual_seed(0)
    out = compiled(q, k, v)
    out.sum().backward()
    assert out.shape == (1, 2, 6, 4) and torch.isfinite(q.grad).all()
    torch.testing.assert_close(compiled(q, k, v, ) * 0, out * 0)


# ----------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_autocast_runs_in_the_lower_precision_as_torch(device):
    dt = torch.bfloat16 if device == "cpu" else torch.float16
    q, k, v = (_rand(2, 2, 9, 8, device=device) for _ in range(3))
    m = torch.randn(9, 9, device=device)
    with torch.autocast(device, dtype=dt):
        ours = SDPA(q, k, v, attn_mask=m)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        core = torch.ops.torch_ops.attention(q, k, v, None, 0.0, True, 0.3, None)
    assert ours.dtype == theirs.dtype == core.dtype == dt
    torch.testing.assert_close(ours, theirs, **TOL[dt])
    torch.testing.assert_close(core.float(), F.scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), is_causal=True, scale=0.3).float(), **TOL[dt])
    ours.float().sum().backward()
    assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all()


# ----------------------------------------------------------------------------- errors


def test_errors():
    q, k, v = _rand(1, 2, 4, 8), _rand(1, 2, 5, 8), _rand(1, 2, 5, 8)
    with pytest.raises(RuntimeError, match="at least 2-D"):
        SDPA(_rand(8), _rand(8), _rand(8))
    with pytest.raises(RuntimeError, match="key.size"):
        SDPA(q, _rand(1, 2, 5, 7), v)
    with pytest.raises(RuntimeError, match="value.size"):
        SDPA(q, k, _rand(1, 2, 6, 8))
    with pytest.raises(RuntimeError, match="dtype"):
        SDPA(q, k.double(), v)
    with pytest.raises(RuntimeError, match="is_causal"):
        SDPA(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(RuntimeError, match="divide"):
        SDPA(_rand(1, 4, 4, 8), _rand(1, 3, 5, 8), _rand(1, 3, 5, 8), enable_gqa=True)
    with pytest.raises(RuntimeError, match="dropout_p"):
        SDPA(q, k, v, dropout_p=1.5)
    with pytest.raises(RuntimeError, match="attn_mask"):
        SDPA(q, k, v, attn_mask=torch.zeros(4, 5, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="broadcast|size"):
        SDPA(q, k, v, attn_mask=torch.zeros(3, 5))
    with pytest.raises(TypeError, match="query"):
        SDPA([1.0], k, v)
    with pytest.raises(RuntimeError, match="seed"):
        torch.ops.torch_ops.attention(q, k, v, None, 0.5, False, 1.0, None)
    with pytest.raises(RuntimeError, match="4-D"):
        torch.ops.torch_ops.attention(q[0], k[0], v[0], None, 0.0, False, 1.0, None)
    # inputs untouched by a failed call
    before = q.detach().clone()
    with pytest.raises(RuntimeError):
        SDPA(q, k, _rand(1, 2, 6, 8))
    assert torch.equal(q.detach(), before)
