"""The softmax family: softmax, log_softmax, cross_entropy, linear_cross_entropy against
PyTorch (every dtype, any dim, every cross_entropy semantic and edge case), gradcheck and
gradgradcheck, opcheck, torch.compile, errors, the Function classes, modules and convert()."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
import torch_ops.autograd as AF
from conftest import ALL_DEVICES, AUTOCAST, TOL, check_autocast, check_autocast_dtypes_fake_cuda, device_dtype_params

SOFTMAX = {"softmax": (torch_ops.softmax, F.softmax), "log_softmax": (torch_ops.log_softmax, F.log_softmax)}


def _tol(dtype):
    return TOL[dtype]


# ------------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("name", list(SOFTMAX))
@pytest.mark.parametrize("shape,dim", [((7, 33), -1), ((3, 5, 70), 1), ((4, 6, 5), 0), ((2, 3, 4, 9), 2), ((130,), 0), ((), 0), ((3, 0, 4), -1), ((2, 1000), 1)])
def test_softmax_forward_backward_match_torch(device, dtype, name, shape, dim):
    ours, ref = SOFTMAX[name]
    x = (torch.randn(shape, device=device, dtype=dtype) * 3).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    y, yr = ours(x, dim), ref(xr, dim)
    assert y.shape == yr.shape and y.dtype == yr.dtype and y.is_contiguous()
    torch.testing.assert_close(y, yr, **_tol(dtype))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gxr,) = torch.autograd.grad(yr, xr, g)
    if dtype in (torch.bfloat16, torch.float16) and y.dim() > 0:
        # A one-ulp difference of the rounded output is amplified by the backward (exp(y) *
        # sum(g)); compare the backward on the same output instead.
        back = torch._log_softmax_backward_data if name == "log_softmax" else torch._softmax_backward_data
        gxr = back(g, y.detach(), dim, dtype)
    torch.testing.assert_close(gx, gxr, **_tol(dtype))


@pytest.mark.parametrize("name", list(SOFTMAX))
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 65, 100, 4099])
def test_softmax_kernel_paths_every_isa(name, n, cpu_isa):
    ours, ref = SOFTMAX[name]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = (torch.randn(3, n, dtype=dtype) * 4).requires_grad_()
        y = ours(x, -1)
        torch.testing.assert_close(y, ref(x, -1), **_tol(dtype))
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, g)
        xr = x.detach().requires_grad_()
        (gxr,) = torch.autograd.grad(ref(xr, -1), xr, g)
        if dtype == torch.bfloat16:  # the backward on the same (rounded) output
            back = torch._log_softmax_backward_data if name == "log_softmax" else torch._softmax_backward_data
            gxr = back(g, y.detach(), -1, dtype)
        if dtype == torch.float32 and n > 1000:
            # sum(g) over thousands of float terms: PyTorch's own rounding error exceeds the
            # float32 tolerance; ask for no more error than PyTorch's against float64.
            xd = x.detach().double().requires_grad_()
            (exact,) = torch.autograd.grad(ref(xd, -1), xd, g.double())
            assert (gx.double() - exact).abs().max() <= 2 * (gxr.double() - exact).abs().max() + 1e-5
            continue
        torch.testing.assert_close(gx, gxr, **_tol(dtype))


@pytest.mark.parametrize("name", list(SOFTMAX))
def test_softmax_dtype_argument_and_none_dim(name):
    ours, ref = SOFTMAX[name]
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ours(x, 1, dtype=torch.float64), ref(x, 1, dtype=torch.float64))
    assert ours(x, 1, dtype=torch.float64).dtype == torch.float64
    for shape in [(5,), (2, 3), (2, 3, 4), (2, 3, 4, 5)]:
        x = torch.randn(shape)
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            y = ours(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.testing.assert_close(y, ref(x))


def test_softmax_special_values():
    x = torch.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3, [1e30, -1e30, 0.0], [float("nan"), 0, 1]])
    for name, (ours, ref) in SOFTMAX.items():
        torch.testing.assert_close(ours(x, 1), ref(x, 1), equal_nan=True)


def test_softmax_noncontiguous_input():
    x = torch.randn(6, 40, dtype=torch.float64)[:, ::2].t()
    for name, (ours, ref) in SOFTMAX.items():
        for dim in (0, 1):
            torch.testing.assert_close(ours(x, dim), ref(x, dim))


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", list(SOFTMAX))
@pytest.mark.parametrize("entry", ["functional", "function"])
def test_softmax_gradcheck_gradgradcheck(device, name, entry):
    fn = SOFTMAX[name][0] if entry == "functional" else {"softmax": AF.SoftmaxFunction, "log_softmax": AF.LogSoftmaxFunction}[name].apply
    for shape, dim in (((3, 5), 1), ((2, 3, 4), 0), ((4,), 0)):
        x = torch.randn(shape, device=device, dtype=torch.float64, requires_grad=True)
        assert gradcheck(lambda t: fn(t, dim), (x,))
        assert gradgradcheck(lambda t: fn(t, dim), (x,))


def test_softmax_third_derivative_matches_torch():
    for name, (ours, ref) in SOFTMAX.items():
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

        def third(fn):
            y = (fn(x, 1) * torch.arange(4.0, dtype=torch.float64)).sum()
            (g,) = torch.autograd.grad(y, x, create_graph=True)
            (h,) = torch.autograd.grad((g * g).sum(), x, create_graph=True)
            return torch.autograd.grad(h.sum(), x)[0]

        torch.testing.assert_close(third(ours), third(ref))


# ------------------------------------------------------------------------ cross_entropy


def _targets(shape_n, C, device, ignore=None):
    t = torch.randint(0, C, shape_n, device=device)
    if ignore is not None and t.numel() > 1:
        t.view(-1)[::3] = ignore
    return t


def _ref_input(x):
    """The reference's input: float16 / bfloat16 are computed in float (as our kernels
    accumulate; PyTorch rounds its log_softmax to the input dtype first), other dtypes as is."""
    ref = x.detach().float() if x.dtype in (torch.float16, torch.bfloat16) else x.detach().clone()
    return ref.requires_grad_(x.requires_grad)


def _ref_kw(kw):
    w = kw.get("weight")
    return {**kw, "weight": w.float() if w is not None and w.dtype in (torch.float16, torch.bfloat16) else w}


CE_SHAPES = [((5,), ()), ((6, 7), (6,)), ((3, 5, 4), (3, 4)), ((2, 4, 3, 2), (2, 3, 2))]


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("shape,tshape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_class_targets_match_torch(device, dtype, shape, tshape, reduction):
    C = shape[0] if len(shape) == 1 else shape[1]
    for weighted, ls, ignore in ((False, 0.0, None), (True, 0.0, 2), (False, 0.2, 1), (True, 0.3, 0)):
        x = (torch.randn(shape, device=device, dtype=dtype) * 2).requires_grad_()
        t = _targets(tshape, C, device, ignore)
        w = torch.rand(C, device=device, dtype=dtype) + 0.5 if weighted else None
        kw = dict(weight=w, reduction=reduction, label_smoothing=ls, ignore_index=ignore if ignore is not None else -100)
        xr = _ref_input(x)
        y, yr = torch_ops.cross_entropy(x, t, **kw), F.cross_entropy(xr, t, **_ref_kw(kw))
        assert y.shape == yr.shape and y.dtype == dtype
        torch.testing.assert_close(y, yr.to(dtype), **_tol(dtype), equal_nan=True)
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, g)
        (gxr,) = torch.autograd.grad(yr, xr, g.to(yr.dtype))
        torch.testing.assert_close(gx, gxr.to(dtype), **_tol(dtype))


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 5, 3)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_probability_targets_match_torch(device, dtype, shape, reduction):
    C = shape[0] if len(shape) == 1 else shape[1]
    cdim = 0 if len(shape) == 1 else 1
    for weighted, ls in ((False, 0.0), (True, 0.25)):
        x = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
        t = torch.randn(shape, device=device, dtype=dtype).softmax(cdim).requires_grad_()
        w = torch.rand(C, device=device, dtype=dtype) + 0.5 if weighted else None
        kw = dict(weight=w, reduction=reduction, label_smoothing=ls)
        xr, tr = _ref_input(x), _ref_input(t)
        y, yr = torch_ops.cross_entropy(x, t, **kw), F.cross_entropy(xr, tr, **_ref_kw(kw))
        torch.testing.assert_close(y, yr.to(dtype), **_tol(dtype))
        g = torch.randn_like(y)
        gx, gt = torch.autograd.grad(y, (x, t), g)
        gxr, gtr = torch.autograd.grad(yr, (xr, tr), g.to(yr.dtype))
        torch.testing.assert_close(gx, gxr.to(dtype), **_tol(dtype))
        torch.testing.assert_close(gt, gtr.to(dtype), **_tol(dtype))


def test_cross_entropy_edge_cases_match_torch():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), -100)
    w = torch.rand(5, dtype=torch.float64)
    for kw in (dict(), dict(weight=w), dict(label_smoothing=0.1), dict(reduction="sum"), dict(reduction="none")):
        y, yr = torch_ops.cross_entropy(x, t, **kw), F.cross_entropy(x, t, **kw)
        torch.testing.assert_close(y, yr, equal_nan=True)  # all ignored: nan for mean, 0 for sum
        (gx,) = torch.autograd.grad(y.sum(), x)
        (gxr,) = torch.autograd.grad(yr.sum(), x)
        torch.testing.assert_close(gx, gxr, equal_nan=True)
    # empty batch
    e = torch.randn(0, 5, dtype=torch.float64, requires_grad=True)
    te = torch.zeros(0, dtype=torch.long)
    for red in ("mean", "sum", "none"):
        torch.testing.assert_close(torch_ops.cross_entropy(e, te, reduction=red), F.cross_entropy(e, te, reduction=red), equal_nan=True)
        torch.testing.assert_close(torch_ops.cross_entropy(e, e.softmax(1), reduction=red), F.cross_entropy(e, e.softmax(1), reduction=red), equal_nan=True)
    # legacy size_average / reduce, label_smoothing = 1, large logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # size_average / reduce are deprecated, in both
        for legacy in (dict(size_average=False), dict(reduce=False)):
            torch.testing.assert_close(torch_ops.cross_entropy(x, t.clamp(min=0), **legacy), F.cross_entropy(x, t.clamp(min=0), **legacy))
    tt = torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(torch_ops.cross_entropy(x, tt, label_smoothing=1.0), F.cross_entropy(x, tt, label_smoothing=1.0))
    big = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float64)
    torch.testing.assert_close(torch_ops.cross_entropy(big, torch.tensor([2])), F.cross_entropy(big, torch.tensor([2])))
    # the caller's logits are never written
    before = x.detach().clone()
    torch_ops.cross_entropy(x, tt).backward()
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("n", [1, 7, 16, 33, 100])
def test_cross_entropy_kernel_paths_every_isa(n, cpu_isa):
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(5, n, dtype=dtype, requires_grad=True)
        t = torch.randint(0, n, (5,))
        w = torch.rand(n, dtype=dtype) + 0.5
        for kw in (dict(), dict(weight=w, label_smoothing=0.1)):
            xr = _ref_input(x)
            y, yr = torch_ops.cross_entropy(x, t, **kw), F.cross_entropy(xr, t, **_ref_kw(kw))
            torch.testing.assert_close(y, yr.to(dtype), **_tol(dtype))
            torch.testing.assert_close(torch.autograd.grad(y, x)[0], torch.autograd.grad(yr, xr)[0].to(dtype), **_tol(dtype))


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("entry", ["functional", "function"])
def test_cross_entropy_gradcheck_gradgradcheck(device, entry):
    def ce(x, t, **kw):
        if entry == "functional":
            return torch_ops.cross_entropy(x, t, **kw)
        return AF.CrossEntropyFunction.apply(x, t, kw.get("weight"), kw.get("reduction", "mean"), kw.get("ignore_index", -100), kw.get("label_smoothing", 0.0))

    d = dict(device=device, dtype=torch.float64)
    w = torch.rand(4, **d) + 0.5
    cases = [
        ((3, 4), torch.tensor([0, 3, 1], device=device), dict()),
        ((3, 4), torch.tensor([0, 3, 1], device=device), dict(weight=w, ignore_index=3, label_smoothing=0.2, reduction="sum")),
        ((2, 4, 3), torch.tensor([[0, 3, 1], [2, 2, 0]], device=device), dict(reduction="none", label_smoothing=0.1)),
        ((4,), torch.tensor(2, device=device), dict(weight=w)),
    ]
    for shape, t, kw in cases:
        x = torch.randn(shape, **d, requires_grad=True)
        assert gradcheck(lambda a: ce(a, t, **kw), (x,))
        assert gradgradcheck(lambda a: ce(a, t, **kw), (x,))
    x = torch.randn(3, 4, **d, requires_grad=True)
    p = torch.rand(3, 4, **d).softmax(1).requires_grad_()
    for kw in (dict(), dict(weight=w, label_smoothing=0.3, reduction="none")):
        assert gradcheck(lambda a, b: ce(a, b, **kw), (x, p))
        assert gradgradcheck(lambda a, b: ce(a, b, **kw), (x, p))


def test_cross_entropy_errors_match_torch():
    x = torch.randn(3, 5)
    cases = [
        (torch.tensor([0, 5, 1]), {}, IndexError),
        (torch.tensor([0, -2, 1]), {}, IndexError),
        (torch.tensor([0, 1]), {}, ValueError),
        (torch.tensor([0, 1, 2], dtype=torch.int32), {}, RuntimeError),
        (torch.zeros(3, 5, dtype=torch.long), {}, RuntimeError),
        (torch.tensor([0, 1, 2]), dict(weight=torch.ones(4)), RuntimeError),
        (torch.tensor([0, 1, 2]), dict(label_smoothing=1.5), RuntimeError),
        (torch.tensor([0, 1, 2]), dict(reduction="avg"), ValueError),
        (torch.rand(3, 5), dict(ignore_index=1), RuntimeError),
    ]
    for t, kw, exc in cases:
        with pytest.raises(exc):
            F.cross_entropy(x, t, **kw)
        with pytest.raises(exc):
            torch_ops.cross_entropy(x, t, **kw)
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        torch_ops.cross_entropy(x, torch.tensor([0, 5, 1]))
    with pytest.raises(RuntimeError, match="weight"):
        torch_ops.cross_entropy(x.requires_grad_(), torch.tensor([0, 1, 2]), weight=torch.ones(5, requires_grad=True)).backward()


# ----------------------------------------------------------------- linear_cross_entropy


def _lce_ref(x, w, t, b=None, **kw):
    kw.pop("chunk_size", None)
    return F.cross_entropy(F.linear(x, w, b), t, **kw)


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_matches_composition(device, dtype, reduction, bias):
    N, H, V = 13, 8, 11
    for chunk, ls, ignore in ((None, 0.0, -100), (4, 0.1, 3), (5, 0.0, 0), (13, 0.0, -100), (100, 0.2, -100)):
        x = torch.randn(N, H, device=device, dtype=dtype, requires_grad=True)
        w = torch.randn(V, H, device=device, dtype=dtype, requires_grad=True)
        b = torch.randn(V, device=device, dtype=dtype, requires_grad=True) if bias else None
        t = torch.randint(0, V, (N,), device=device)
        t[::4] = ignore if ignore >= 0 else -100
        kw = dict(reduction=reduction, label_smoothing=ls, ignore_index=ignore)
        y = torch_ops.linear_cross_entropy(x, w, t, b, chunk_size=chunk, **kw)
        yr = _lce_ref(x, w, t, b, **kw)
        tol = dict(rtol=5e-5, atol=5e-5) if dtype == torch.float32 else _tol(dtype)
        if dtype in (torch.bfloat16, torch.float16):
            tol = dict(rtol=3e-2, atol=3e-2)
        torch.testing.assert_close(y, yr, **tol)
        g = torch.randn_like(y)
        wrt = (x, w) + ((b,) if bias else ())
        got = torch.autograd.grad(y, wrt, g)
        exp = torch.autograd.grad(yr, wrt, g)
        for a, e in zip(got, exp):
            torch.testing.assert_close(a, e, **tol)


def test_linear_cross_entropy_leading_dims_and_retain_graph():
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 9, (2, 3))
    y = torch_ops.linear_cross_entropy(x, w, t, chunk_size=4)
    yr = F.cross_entropy(F.linear(x, w).reshape(-1, 9), t.reshape(-1))
    torch.testing.assert_close(y, yr)
    y.backward(torch.tensor(2.0, dtype=torch.float64), retain_graph=True)
    g1 = x.grad.clone()
    y.backward(torch.tensor(2.0, dtype=torch.float64))  # a second backward recomputes
    torch.testing.assert_close(x.grad, 2 * g1)
    (gr,) = torch.autograd.grad(yr * 2, x)
    torch.testing.assert_close(g1, gr)
    none = torch_ops.linear_cross_entropy(x, w, t, reduction="none")
    assert none.shape == (2, 3)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("entry", ["functional", "function"])
def test_linear_cross_entropy_gradcheck_gradgradcheck(device, entry):
    d = dict(device=device, dtype=torch.float64)
    t = torch.tensor([0, 4, 2, 1, 4], device=device)

    def lce(x, w, b, **kw):
        if entry == "functional":
            return torch_ops.linear_cross_entropy(x, w, t, b, **kw)
        return AF.LinearCrossEntropyFunction.apply(x, w, t, b, kw.get("ignore_index", -100), kw.get("reduction", "mean"), kw.get("label_smoothing", 0.0), kw.get("chunk_size"))

    for kw in (dict(chunk_size=2), dict(reduction="none", chunk_size=3, ignore_index=4), dict(reduction="sum", label_smoothing=0.2)):
        x = torch.randn(5, 3, **d, requires_grad=True)
        w = torch.randn(6, 3, **d, requires_grad=True)
        b = torch.randn(6, **d, requires_grad=True)
        assert gradcheck(lambda a, c, e: lce(a, c, e, **kw), (x, w, b))
        assert gradgradcheck(lambda a, c, e: lce(a, c, e, **kw), (x, w, b))


def test_linear_cross_entropy_errors():
    x, w = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(IndexError):
        torch_ops.linear_cross_entropy(x, w, torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError):
        torch_ops.linear_cross_entropy(x, w, torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError):
        torch_ops.linear_cross_entropy(x, torch.randn(5, 4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError):
        torch_ops.linear_cross_entropy(x, w, torch.tensor([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(ValueError):
        torch_ops.linear_cross_entropy(x, w, torch.tensor([0, 1, 2, 3]), chunk_size=0)


# ----------------------------------------------------------------------------- autocast


def _autocast_cases(device, low):
    """name -> (args, ours, torch's counterpart, computed in `low` somewhere): every op with a
    float32 and a lower-precision input, the arguments that matter to the policy (softmax's
    dtype, float32 class weights, probability targets), float32 parameters."""
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, dtype=torch.float32, grad=True):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_(grad)

    t = torch.randint(0, 7, (5,), generator=g).to(device)
    t[1] = 2
    cw = torch.rand(7, generator=g).to(device) + 0.5
    cases = {}
    for xdt in (torch.float32, low):
        x = str(xdt).split(".")[-1]
        for name, (ours, ref) in SOFTMAX.items():
            for dt in (None, low):
                cases[f"{name}-{x}-dtype={dt}"] = ([rnd(5, 7, dtype=xdt)], (lambda a, o=ours, d=dt: o(a, 1, dtype=d)), (lambda a, r=ref, d=dt: r(a, 1, dtype=d)), xdt != torch.float32 or dt is not None)
        kw = dict(ignore_index=2, label_smoothing=0.1)
        cases[f"cross_entropy-{x}-weight-smoothing"] = (
            [rnd(5, 7, dtype=xdt), t, cw],
            (lambda a, b, c: torch_ops.cross_entropy(a, b, c, **kw)),
            (lambda a, b, c: F.cross_entropy(a, b, c, **kw)),
            xdt != torch.float32,
        )
        cases[f"cross_entropy-{x}-probabilities"] = (
            [rnd(5, 7, dtype=xdt), torch.rand(5, 7, generator=g).softmax(-1).to(device=device, dtype=xdt).requires_grad_()],
            (lambda a, b: torch_ops.cross_entropy(a, b, reduction="none")),
            (lambda a, b: F.cross_entropy(a, b, reduction="none")),
            xdt != torch.float32,
        )
        cases[f"linear_cross_entropy-{x}"] = (
            [rnd(5, 6, dtype=xdt), rnd(7, 6), t, rnd(7)],
            (lambda a, w, b, bias: torch_ops.linear_cross_entropy(a, w, b, bias, label_smoothing=0.1, chunk_size=2)),
            (lambda a, w, b, bias: F.cross_entropy(F.linear(a, w, bias), b, label_smoothing=0.1)),
            True,
        )
        cases[f"linear_cross_entropy-{x}-none"] = (
            [rnd(5, 6, dtype=xdt), rnd(7, 6), t],
            (lambda a, w, b: torch_ops.linear_cross_entropy(a, w, b, reduction="none", ignore_index=2)),
            (lambda a, w, b: F.cross_entropy(F.linear(a, w), b, reduction="none", ignore_index=2)),
            True,
        )
    return cases


@pytest.mark.parametrize("device,dtype", AUTOCAST)
@pytest.mark.parametrize("case", list(_autocast_cases("cpu", torch.bfloat16)))
def test_autocast(device, dtype, case):
    """Under torch.autocast each op gives the dtype that its torch counterpart gives under the
    same autocast (softmax / log_softmax: float32 on CUDA unless dtype is given, the input's on
    CPU; cross_entropy: float32; linear_cross_entropy: as cross_entropy(linear(...)), a
    float32 loss from lower-precision logits), values close to torch's, and gradients of the
    float32 parameters."""
    case = case.replace("bfloat16", str(dtype).split(".")[-1])
    args, ours, ref, low_compute = _autocast_cases(device, dtype)[case]
    check_autocast(device, dtype, args, ours, ref, TOL[dtype] if low_compute else TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", list(_autocast_cases("cpu", torch.bfloat16)))
def test_autocast_cuda_policy_without_a_gpu(dtype, case):
    """The dtypes under CUDA autocast (softmax / log_softmax float32 unless dtype is given,
    cross_entropy float32, linear_cross_entropy a float32 loss) against torch's, on fake CUDA
    tensors: checked on any machine."""
    case = case.replace("bfloat16", str(dtype).split(".")[-1])
    args, ours, ref, _ = _autocast_cases("cpu", dtype)[case]
    check_autocast_dtypes_fake_cuda(dtype, args, ours, ref)


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    d = dict(device=device, dtype=torch.float64)
    ops = torch.ops.torch_ops
    x = torch.randn(4, 6, **d, requires_grad=True)
    x3 = torch.randn(2, 3, 4, **d, requires_grad=True)
    y = torch.softmax(x.detach(), 1)
    t = torch.tensor([0, 5, 2, 1], device=device)
    w = torch.rand(6, **d)
    row_max = x.detach().amax(1)
    log_sum = torch.logsumexp(x.detach(), 1) - row_max
    return [
        (ops.softmax.default, (x, 1)),
        (ops.softmax.default, (x3, 0)),
        (ops.softmax.default, (x3.detach().float(), 1, torch.float64)),
        (ops.log_softmax.default, (x3, -1)),
        (ops.softmax_backward.default, (torch.randn(4, 6, **d), y, 1)),
        (ops.log_softmax_backward.default, (torch.randn(4, 6, **d), y.log(), 1)),
        (ops.cross_entropy.default, (x, t, None, 1, -100, 0.0)),
        (ops.cross_entropy.default, (x, t, w, 0, 2, 0.1)),
        (ops.cross_entropy.default, (x3, torch.randint(0, 3, (2, 4), device=device), None, 2, -100, 0.0)),
        (ops.cross_entropy.default, (x, y, None, 1, -100, 0.1)),
        (ops.cross_entropy_forward.default, (x.detach(), t, w, 1, -100, 0.0)),
        (ops.cross_entropy_backward.default, (torch.tensor(1.0, **d), x.detach(), t, w, 2, -100, 0.0, row_max, log_sum, torch.empty(0, **d))),
        (ops.linear_cross_entropy.default, (x, torch.randn(5, 6, **d, requires_grad=True), torch.tensor([0, 4, 2, 1], device=device), None, -100, 1, 0.0, 2)),
        (ops.linear_cross_entropy.default, (x.float(), torch.randn(5, 6, device=device, requires_grad=True), torch.tensor([0, 4, 2, 1], device=device), None, -100, 0, 0.0, None, torch.float64)),
        (ops.linear_cross_entropy_chunked.default, (x.detach(), torch.randn(5, 6, **d), torch.tensor([0, 4, 2, 1], device=device), torch.randn(5, **d), None, -100, 1, 0.0, 3, [True, True, True])),
    ]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_forward_backward(device, dynamic):
    torch._dynamo.reset()
    w = torch.randn(7, 5, device=device, dtype=torch.float64, requires_grad=True)

    def fn(x, t):
        a = torch_ops.softmax(x * 1.5, -1).sum() + torch_ops.log_softmax(x, 0).sum() * 0.1
        b = torch_ops.cross_entropy(x, t, label_smoothing=0.1)
        c = torch_ops.linear_cross_entropy(x.new_ones(()) * x[:, :5], w, t, chunk_size=2)
        return a + b + c

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (4, 6):
        x = torch.randn(n, 7, device=device, dtype=torch.float64, requires_grad=True)
        t = torch.randint(0, 7, (n,), device=device)
        xr = x.detach().clone().requires_grad_()
        out, ref = compiled(x, t), fn(xr, t)
        torch.testing.assert_close(out, ref)
        out.backward()
        ref.backward()
        torch.testing.assert_close(x.grad, xr.grad)


def test_compile_inductor_modules():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch_ops.nn.LogSoftmax(dim=-1))
    loss = torch_ops.nn.CrossEntropyLoss(label_smoothing=0.1)
    x, t = torch.randn(4, 6), torch.randint(0, 5, (4,))
    compiled = torch.compile(lambda a, b: loss(model(a), b), fullgraph=True)
    torch.testing.assert_close(compiled(x, t), loss(model(x), t))


# ----------------------------------------------------------------------------- modules


def test_modules_are_drop_ins():
    x = torch.randn(3, 4)
    t = torch.tensor([0, 3, 1])
    w = torch.rand(4)
    for ours, ref in (
        (torch_ops.nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (torch_ops.nn.LogSoftmax(dim=0), torch.nn.LogSoftmax(dim=0)),
    ):
        assert isinstance(ours, type(ref)) and repr(ours) == repr(ref)
        torch.testing.assert_close(ours(x), ref(x))
    ours = torch_ops.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.2, reduction="sum")
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.2, reduction="sum")
    assert ours.state_dict().keys() == ref.state_dict().keys()
    torch.testing.assert_close(ours(x, t), ref(x, t))
    lce = torch_ops.nn.LinearCrossEntropyLoss(4, 6, bias=True, chunk_size=2)
    xs, ts = torch.randn(5, 4), torch.randint(0, 6, (5,))
    torch.testing.assert_close(lce(xs, ts), F.cross_entropy(F.linear(xs, lce.weight, lce.bias), ts))
    assert set(lce.state_dict()) == {"weight", "bias"}


def test_convert_learns_softmax_family():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Softmax(dim=-1), torch.nn.LogSoftmax(dim=-1))
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    before = crit(model(x), t)
    torch_ops.nn.convert(model)
    torch_ops.nn.convert(crit)
    assert isinstance(model[1], torch_ops.nn.Softmax) and isinstance(model[2], torch_ops.nn.LogSoftmax)
    assert isinstance(crit, torch_ops.nn.CrossEntropyLoss)
    torch.testing.assert_close(crit(model(x), t), before)


def test_forward_mode_ad_is_refused_loudly():
    """A C++ autograd node has no jvp: torch.func.jvp must raise, not return a zero tangent."""
    x = torch.randn(3, 5, dtype=torch.float64)
    t = torch.tensor([0, 4, 2])
    w = torch.randn(6, 5, dtype=torch.float64)
    cases = [
        ("softmax", lambda a: torch_ops.softmax(a, -1)),
        ("log_softmax", lambda a: torch_ops.log_softmax(a, -1)),
        ("cross_entropy", lambda a: torch_ops.cross_entropy(a, t)),
        ("linear_cross_entropy", lambda a: torch_ops.linear_cross_entropy(a, w, t)),
    ]
    for name, fn in cases:
        with pytest.raises(RuntimeError, match=rf"torch_ops\.{name}: forward-mode AD"):
            torch.func.jvp(fn, (x,), (torch.ones_like(x),))
