"""activations: forward and backward against torch in every dtype, gradcheck and
gradgradcheck, double backward against torch, what is saved, in-place semantics,
opcheck, torch.compile, errors, the Function classes, modules and convert()."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
from conftest import ALL_DEVICES, TOL, device_dtype_params

OPS = torch.ops.torch_ops
AF = torch_ops.autograd


def _swiglu_ref(x, dim=-1):
    a, b = x.chunk(2, dim)
    return F.silu(a) * b


def _geglu_ref(x, dim=-1, approximate="none"):
    a, b = x.chunk(2, dim)
    return F.gelu(a, approximate=approximate) * b


# name -> (ours, torch reference, keyword-argument variants)
UNARY = {
    "relu": (torch_ops.relu, F.relu, [{}]),
    "leaky_relu": (torch_ops.leaky_relu, F.leaky_relu, [{}, {"negative_slope": 0.2}, {"negative_slope": -1.5}]),
    "gelu": (torch_ops.gelu, F.gelu, [{}, {"approximate": "tanh"}]),
    "silu": (torch_ops.silu, F.silu, [{}]),
    "sigmoid": (torch_ops.sigmoid, torch.sigmoid, [{}]),
    "tanh": (torch_ops.tanh, torch.tanh, [{}]),
}
GATED = {
    "glu": (torch_ops.glu, F.glu, [{}, {"dim": 0}]),
    "swiglu": (torch_ops.swiglu, _swiglu_ref, [{}, {"dim": 0}]),
    "geglu": (torch_ops.geglu, _geglu_ref, [{}, {"dim": 0}, {"approximate": "tanh"}]),
}
FUNCTIONS = {
    "relu": AF.ReLUFunction,
    "leaky_relu": AF.LeakyReLUFunction,
    "gelu": AF.GELUFunction,
    "silu": AF.SiLUFunction,
    "sigmoid": AF.SigmoidFunction,
    "tanh": AF.TanhFunction,
    "glu": AF.GLUFunction,
    "swiglu": AF.SwiGLUFunction,
    "geglu": AF.GEGLUFunction,
}


def _cases(table):
    return [
        pytest.param(name, kw, id=name + "".join(f"-{k}={v}" for k, v in kw.items()))
        for name, (_, _, variants) in table.items()
        for kw in variants
    ]


UNARY_CASES = _cases(UNARY)
GATED_CASES = _cases(GATED)

# Shapes: 0-D, empty, a vector tail, a multiple of every vector width, 4-D, and one large
# enough to be split among threads.
UNARY_SHAPES = [(), (0,), (7,), (3, 0, 4), (37, 41), (4, 64), (2, 3, 5, 7), (70001,)]
# (shape, dim): the dim is given to the op; the gated cases with dim=0 use shape[0].
GATED_SHAPES = [((4, 6), -1), ((6,), 0), ((3, 8, 5), 1), ((0, 4), -1), ((2, 0, 4), -1), ((2, 4, 9001), 1), ((40, 66), -1)]


def _x(shape, device, dtype, scale=3.0):
    return (torch.randn(shape, device=device, dtype=torch.float64) * scale).to(dtype)


def _call(fn, x, kw):
    return fn(x, **kw)


def _gated_kw(kw, dim):
    """kw with dim (the variant's own, else the shape's), in the positional order (dim, approximate)."""
    return {"dim": kw.get("dim", dim), **{k: v for k, v in kw.items() if k != "dim"}}


# ----------------------------------------------------------------------------- forward / backward


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("name,kw", UNARY_CASES)
def test_unary_forward_backward_match_torch(device, dtype, name, kw):
    ours, ref, _ = UNARY[name]
    torch.manual_seed(0)
    for shape in UNARY_SHAPES:
        x = _x(shape, device, dtype).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        y, yr = ours(x, **kw), ref(xr, **kw)
        assert y.shape == yr.shape and y.dtype == yr.dtype and y.device == yr.device
        torch.testing.assert_close(y, yr, **TOL[dtype])
        gy = torch.randn_like(yr)
        y.backward(gy)
        yr.backward(gy)
        torch.testing.assert_close(x.grad, xr.grad, **TOL[dtype])


def _gated_reference(ref, x, kw, gy):
    """torch's composition (chunk, activation, multiply) in x's dtype for float64 and
    float32; for bfloat16 and float16 in float64 rounded once to x's dtype (the eager
    composition rounds after each of its ops, the fused kernel once)."""
    low = x.dtype in (torch.bfloat16, torch.float16)
    xr = (x.detach().double() if low else x.detach().clone()).requires_grad_()
    yr = ref(xr, **kw)
    yr.backward(gy.to(xr.dtype))
    return yr.to(x.dtype), xr.grad.to(x.dtype)


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("name,kw", GATED_CASES)
def test_gated_forward_backward_match_torch(device, dtype, name, kw):
    ours, ref, _ = GATED[name]
    torch.manual_seed(0)
    for shape, dim in GATED_SHAPES:
        k = _gated_kw(kw, dim)
        if shape[k["dim"]] % 2:
            continue
        x = _x(shape, device, dtype).requires_grad_()
        y = ours(x, **k)
        gy = torch.randn(y.shape, device=device, dtype=torch.float64).to(dtype)
        y_ref, g_ref = _gated_reference(ref, x, k, gy)
        assert y.shape == y_ref.shape and y.dtype == dtype
        torch.testing.assert_close(y, y_ref, **TOL[dtype])
        y.backward(gy)
        torch.testing.assert_close(x.grad, g_ref, **TOL[dtype])


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,kw", UNARY_CASES + GATED_CASES)
def test_noncontiguous_and_expanded(device, name, kw):
    ours, ref, _ = {**UNARY, **GATED}[name]
    torch.manual_seed(0)
    views = [
        ((6, 10, 8), lambda t: t.transpose(0, 2)),
        ((6, 10, 8), lambda t: t[:, ::2, 1:7]),
        ((1, 8), lambda t: t.expand(6, 8)),
    ]
    for shape, view in views:
        base = _x(shape, device, torch.float64)
        bs, br = base.clone().requires_grad_(), base.clone().requires_grad_()
        xs, xr = view(bs), view(br)
        assert not xs.is_contiguous()
        y, yr = ours(xs, **kw), ref(xr, **kw)
        torch.testing.assert_close(y, yr)
        y.sum().backward()  # an expanded gradient (stride 0)
        yr.sum().backward()
        torch.testing.assert_close(bs.grad, br.grad)


@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 65537])
def test_kernel_paths_every_isa(n, cpu_isa):
    """Lengths that take each path of the CPU kernels (two vectors, one, the scalar tail,
    several threads), with each instruction-set variant, in every CPU dtype.

    Unit-scale inputs: torch's own kernels run their best instruction set, so in the
    "default" variant our float32 tanh/exp are libm's, not Sleef's; where 1 - tanh(u)^2
    cancels (|x| > 5) the two differ by ~1e-7 times the gradient's scale."""
    torch.manual_seed(n)
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        x = _x((n,), "cpu", dtype, scale=1.0).requires_grad_()
        for name, kw in [("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("sigmoid", {}), ("tanh", {})]:
            ours, ref, _ = UNARY[name]
            x.grad = None
            xr = x.detach().clone().requires_grad_()
            y, yr = ours(x, **kw), ref(xr, **kw)
            torch.testing.assert_close(y, yr, **TOL[dtype])
            gy = torch.randn_like(yr)
            y.backward(gy)
            yr.backward(gy)
            torch.testing.assert_close(x.grad, xr.grad, **TOL[dtype])
        xg = _x((3, 2 * n), "cpu", dtype, scale=1.0).requires_grad_()
        for name, kw in [("glu", {}), ("swiglu", {}), ("geglu", {}), ("geglu", {"approximate": "tanh"})]:
            ours, ref, _ = GATED[name]
            xg.grad = None
            y = ours(xg, **kw)
            gy = torch.randn_like(y)
            y_ref, g_ref = _gated_reference(ref, xg, kw, gy)
            torch.testing.assert_close(y, y_ref, **TOL[dtype])
            y.backward(gy)
            torch.testing.assert_close(xg.grad, g_ref, **TOL[dtype])


def test_special_values():
    """inf, -inf, NaN and signed zeros behave as in torch (float32)."""
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0] * 3)
    for name, kw in [c.values for c in UNARY_CASES]:
        ours, ref, _ = UNARY[name]
        torch.testing.assert_close(ours(x, **kw), ref(x, **kw), equal_nan=True)
        g = torch.ones_like(x)
        xs, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours(xs, **kw).backward(g)
        ref(xr, **kw).backward(g)
        torch.testing.assert_close(xs.grad, xr.grad, equal_nan=True)


def test_integer_inputs_of_sigmoid_and_tanh_are_promoted():
    x = torch.arange(-3, 4)
    torch.testing.assert_close(torch_ops.sigmoid(x), torch.sigmoid(x))
    torch.testing.assert_close(torch_ops.tanh(x), torch.tanh(x))


# ----------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,kw", UNARY_CASES)
@pytest.mark.parametrize("entry", ["functional", "Function"])
def test_unary_gradcheck_gradgradcheck(device, name, kw, entry):
    torch.manual_seed(0)
    if entry == "functional":
        fn = lambda x: UNARY[name][0](x, **kw)  # noqa: E731
    else:
        fn = lambda x: FUNCTIONS[name].apply(x, *kw.values())  # noqa: E731
    for x in (torch.randn(3, 4, device=device, dtype=torch.float64), torch.randn(5, 4, device=device, dtype=torch.float64)[::2].t()):
        if name in ("relu", "leaky_relu"):  # keep away from the kink, where finite differences fail
            x = x + 0.1 * x.sign()
        x.requires_grad_()
        assert gradcheck(fn, (x,))
        assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,kw", GATED_CASES)
@pytest.mark.parametrize("entry", ["functional", "Function"])
def test_gated_gradcheck_gradgradcheck(device, name, kw, entry):
    torch.manual_seed(0)
    for shape, dim in (((4, 4), -1), ((2, 6, 3), 1), ((4,), 0)):
        k = _gated_kw(kw, dim)
        if shape[k["dim"]] % 2:
            continue
        if entry == "functional":
            fn = lambda x: GATED[name][0](x, **k)  # noqa: E731
        else:
            fn = lambda x: FUNCTIONS[name].apply(x, *k.values())  # noqa: E731
        x = torch.randn(shape, device=device, dtype=torch.float64, requires_grad=True)
        assert gradcheck(fn, (x,))
        assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("name,kw", UNARY_CASES + GATED_CASES)
def test_double_backward_matches_torch(name, kw):
    """Hessian-vector products through our ops (first and second derivatives, with respect
    to the input and to grad_output) equal torch's."""
    ours, ref, _ = {**UNARY, **GATED}[name]
    torch.manual_seed(0)
    x0 = torch.randn(4, 6, dtype=torch.float64) * 2
    results = []
    for fn in (ours, ref):
        x = x0.clone().requires_grad_()
        y = fn(x, **kw)
        gy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
        (gx,) = torch.autograd.grad(y, x, gy, create_graph=True)
        loss = (gx.sin() * torch.arange(gx.numel(), dtype=torch.float64).view_as(gx)).sum()
        results.append(torch.autograd.grad(loss, (x, gy), allow_unused=True, materialize_grads=True))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid", "tanh"])
def test_third_derivative_is_refused_clearly(name):
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = UNARY[name][0](x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"third derivative"):
        torch.autograd.grad(h.sum(), x)


# What each op saves for backward: what PyTorch saves (sigmoid, tanh and relu their result).
SAVES = {"relu": "output", "leaky_relu": "input", "gelu": "input", "silu": "input", "sigmoid": "output", "tanh": "output",
         "glu": "input", "swiglu": "input", "geglu": "input"}  # fmt: skip


@pytest.mark.parametrize("name", list(SAVES))
@pytest.mark.parametrize("entry", ["functional", "Function"])
def test_saves_what_pytorch_saves(name, entry):
    x = torch.randn(4, 6, requires_grad=True)
    fn = {**UNARY, **GATED}[name][0] if entry == "functional" else FUNCTIONS[name].apply
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fn(x)
    assert len(saved) == 1
    want = x if SAVES[name] == "input" else y
    assert saved[0].data_ptr() == want.data_ptr() and saved[0].shape == want.shape
    y.sum().backward()
    assert x.grad is not None
    # nothing requires grad: nothing is saved, no node
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fn(x.detach())
    assert saved == [] and y.grad_fn is None


def test_backward_does_not_write_into_inputs():
    for name, kw in [c.values for c in UNARY_CASES + GATED_CASES]:
        x = torch.randn(4, 6, requires_grad=True)
        y = {**UNARY, **GATED}[name][0](x, **kw)
        gy = torch.randn_like(y)
        copies = (x.detach().clone(), gy.clone())
        y.backward(gy)
        assert torch.equal(x.detach(), copies[0]) and torch.equal(gy, copies[1])


# ----------------------------------------------------------------------------- in place

INPLACE = [("relu", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.3}), ("silu", {})]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,kw", INPLACE)
def test_inplace_modifies_and_returns_input(device, name, kw):
    ours, ref, _ = UNARY[name]
    torch.manual_seed(0)
    for make in (lambda: torch.randn(5, 7, device=device), lambda: torch.randn(7, 5, device=device).t(), lambda: torch.randn(4, 9, device=device)[:, 1:8:2]):
        x = make()
        expected = ref(x.clone(), **kw)
        v = x._version
        out = ours(x, inplace=True, **kw)
        assert out is x
        assert x._version == v + 1
        torch.testing.assert_close(x, expected)


@pytest.mark.parametrize("name,kw", INPLACE)
def test_inplace_gradients_match_torch(name, kw):
    ours, ref, _ = UNARY[name]
    torch.manual_seed(0)
    w0 = torch.randn(4, 6, dtype=torch.float64)
    grads = []
    for fn in (ours, ref):
        w = w0.clone().requires_grad_()
        h = w * 2  # a non-leaf
        out = fn(h, inplace=True, **kw)
        assert out is h
        (out * torch.arange(24.0, dtype=torch.float64).view(4, 6)).sum().backward()
        grads.append(w.grad)
    torch.testing.assert_close(*grads)
    # gradcheck / gradgradcheck through the in-place op on a non-leaf
    x = (w0 + 0.1 * w0.sign()).requires_grad_()
    assert gradcheck(lambda x: ours(x.clone(), inplace=True, **kw), (x,))
    assert gradgradcheck(lambda x: ours(x.clone(), inplace=True, **kw), (x,))


@pytest.mark.parametrize("name,kw", INPLACE)
def test_inplace_errors_where_pytorch_errors(name, kw):
    ours, ref, _ = UNARY[name]
    leaf = torch.randn(3, 4, requires_grad=True)
    for fn in (ours, ref):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
            fn(leaf, inplace=True, **kw)
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an in-place operation"):
            fn(leaf[0], inplace=True, **kw)
    with torch.no_grad():  # allowed without grad mode, as in torch
        ours(leaf, inplace=True, **kw)
    # a saved tensor modified in place: backward refuses, as in torch
    for fn in (ours, ref):
        x = torch.randn(3, 4, requires_grad=True)
        y = torch.sigmoid(x)  # saves its output
        fn(y, inplace=True, **kw)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
    # an expanded tensor cannot be written in place
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        ours(torch.randn(1, 4).expand(3, 4), inplace=True, **kw)


def test_inplace_leaky_relu_negative_slope_backward_raises():
    for fn in (torch_ops.leaky_relu, F.leaky_relu):
        x = torch.randn(3, 4, requires_grad=True) * 1
        y = fn(x, -0.5, inplace=True)
        with pytest.raises(RuntimeError, match="negative slope"):
            y.sum().backward()


def test_inplace_views_rebase_history():
    """In place on a view of a non-leaf: the base's gradient flows through the op."""
    for fn in (torch_ops.relu, F.relu):
        w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
        h = w * 1
        fn(h[1:3], inplace=True)
        h.sum().backward()
        torch.testing.assert_close(w.grad[1:3], (w[1:3] > 0).double())
        torch.testing.assert_close(w.grad[0], torch.ones(6, dtype=torch.float64))


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    f64 = dict(device=device, dtype=torch.float64)
    x = torch.randn(3, 4, **f64, requires_grad=True)
    g = torch.randn(3, 4, **f64, requires_grad=True)
    gg = torch.randn(3, 4, **f64)
    xt = torch.randn(4, 3, **f64).t()
    y = torch.sigmoid(x.detach())
    samples = []
    for name, extra in [("relu", ()), ("leaky_relu", (0.2,)), ("gelu", ("tanh",)), ("gelu", ("none",)), ("silu", ()), ("sigmoid", ()), ("tanh", ())]:
        samples += [(getattr(OPS, name).default, (x, *extra)), (getattr(OPS, name).default, (xt, *extra)),
                    (getattr(OPS, name).default, (x.detach().float(), *extra)),
                    (getattr(OPS, name + "_backward").default, (g, y if name in ("relu", "sigmoid", "tanh") else x, *extra))]  # fmt: skip
        if name not in ("relu", "leaky_relu"):  # linear in gg and g (differentiable); the third
            # derivative through the input is not implemented, so x does not require grad here
            samples.append((getattr(OPS, name + "_double_backward").default, (gg.requires_grad_(), g, x.detach(), *extra)))
    for name, extra in [("relu_", ()), ("leaky_relu_", (0.1,)), ("silu_", ())]:
        samples += [(getattr(OPS, name).default, (torch.randn(3, 4, **f64), *extra)), (getattr(OPS, name).default, (torch.randn(4, 3, **f64).t(), *extra))]
    xg = torch.randn(2, 6, 3, **f64, requires_grad=True)
    gh = torch.randn(2, 3, 3, **f64, requires_grad=True)
    for name, extra in [("glu", ()), ("swiglu", ()), ("geglu", ("none",)), ("geglu", ("tanh",))]:
        samples += [(getattr(OPS, name).default, (xg, 1, *extra)), (getattr(OPS, name).default, (xg.detach().transpose(0, 2), 2, *extra)),
                    (getattr(OPS, name + "_backward").default, (gh, xg, 1, *extra)),
                    (getattr(OPS, name + "_double_backward").default, (torch.randn(2, 6, 3, **f64), gh.detach(), xg.detach(), 1, *extra))]  # fmt: skip
    return samples


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)  # raises on any failed check


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("name,kw", UNARY_CASES + GATED_CASES)
def test_compile_forward_backward(device, dynamic, name, kw):
    torch._dynamo.reset()
    ours = {**UNARY, **GATED}[name][0]

    def fn(x):
        return (ours(x * 1.5, **kw) * 2).sum()

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (4, 6, 8):
        x = torch.randn(2, n, device=device, dtype=torch.float64, requires_grad=True)
        xr = x.detach().clone().requires_grad_()
        out, ref = compiled(x), fn(xr)
        torch.testing.assert_close(out, ref)
        out.backward()
        ref.backward()
        torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,kw", INPLACE)
def test_compile_inplace(device, name, kw):
    torch._dynamo.reset()
    ours = UNARY[name][0]

    def fn(x):
        h = x * 2
        ours(h, inplace=True, **kw)
        return (h * h).sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 5, device=device, dtype=torch.float64, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    out, ref = compiled(x), fn(xr)
    torch.testing.assert_close(out, ref)
    out.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_inductor_modules_and_functions(device):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch_ops.nn.SwiGLU(), torch_ops.nn.GELU(approximate="tanh"), torch.nn.Linear(8, 8),
        torch_ops.nn.ReLU(inplace=True), torch_ops.nn.GEGLU(), torch_ops.nn.Tanh(), torch_ops.nn.GLU(), torch_ops.nn.SiLU(),
        torch_ops.nn.Sigmoid(), torch_ops.nn.LeakyReLU(0.1),
    ).to(device)  # fmt: skip
    x = torch.randn(5, 4, device=device)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)

    fn = torch.compile(lambda x: AF.GELUFunction.apply(x, "tanh") + AF.SwiGLUFunction.apply(x.repeat(1, 2), -1), fullgraph=True)
    x = torch.randn(5, 4, device=device, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    fn(x).sum().backward()
    (F.gelu(xr, approximate="tanh") + _swiglu_ref(xr.repeat(1, 2))).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


# ----------------------------------------------------------------------------- errors


def _error_cases():
    x = torch.randn(4, 3)
    return [
        (lambda: torch_ops.gelu(torch.arange(4)), r"torch_ops\.gelu: expected input to have a floating-point dtype"),
        (lambda: torch_ops.relu(torch.arange(4)), r"torch_ops\.relu: expected input to have a floating-point dtype"),
        (lambda: torch_ops.gelu(x, "fast"), r"torch_ops\.gelu: expected approximate to be 'none' or 'tanh', got 'fast'"),
        (lambda: torch_ops.geglu(x.repeat(1, 2), -1, "fast"), r"torch_ops\.geglu: expected approximate to be 'none' or 'tanh'"),
        (lambda: torch_ops.swiglu(x), r"torch_ops\.swiglu: expected input\.size\(-1\) to be even"),
        (lambda: torch_ops.glu(x, 1), r"torch_ops\.glu: expected input\.size\(1\) to be even"),
        (lambda: torch_ops.swiglu(torch.randn(())), r"torch_ops\.swiglu: expected input to have at least 1 dimension"),
        (lambda: torch_ops.glu(torch.randn(())), r"glu does not support scalars"),
        (lambda: OPS.gelu_backward(torch.randn(4, 3), torch.randn(3, 4)), r"torch_ops\.gelu_backward: expected input to have the shape of grad_output"),
        (lambda: OPS.silu_backward(torch.randn(4, 3), torch.randn(4, 3).double()), r"torch_ops\.silu_backward: expected input to have the dtype of grad_output \(Float\), got Double"),
        (lambda: OPS.sigmoid_backward(torch.randn(4, 3), torch.randn(4, 3, device="meta")), r"torch_ops\.sigmoid_backward: expected result to be on the device of grad_output"),
        (lambda: OPS.swiglu_backward(torch.randn(4, 3), torch.randn(4, 4), -1), r"torch_ops\.swiglu_backward: expected grad_output to have the shape of the output \[4, 2\]"),
        (lambda: OPS.relu_(torch.arange(4)), r"torch_ops\.relu_: expected self to have a floating-point dtype"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(len(_error_cases())))
def test_errors_are_clear(case):
    fn, msg = _error_cases()[case]
    with pytest.raises(RuntimeError, match=msg):
        fn()


def test_dim_out_of_range_is_an_index_error_as_in_torch():
    x = torch.randn(4, 6)
    for fn in (torch_ops.glu, torch_ops.swiglu, torch_ops.geglu, F.glu):
        with pytest.raises(IndexError, match="Dimension out of range"):
            fn(x, 2)


def test_type_errors():
    for fn in (torch_ops.relu, torch_ops.gelu, torch_ops.silu, torch_ops.sigmoid, torch_ops.tanh, torch_ops.leaky_relu, torch_ops.glu, torch_ops.swiglu, torch_ops.geglu):
        with pytest.raises(TypeError):
            fn([1.0, 2.0])
    x = torch.randn(2, 4)
    for call in (lambda: torch_ops.gelu(x, approximate=1), lambda: torch_ops.leaky_relu(x, "a"), lambda: torch_ops.glu(x, 1.5), lambda: torch_ops.geglu(x, -1, None)):
        with pytest.raises(TypeError):
            call()
    # the same as torch.nn.functional for these
    with pytest.raises(TypeError):
        F.gelu(x, approximate=1)
    with pytest.raises(TypeError):
        F.glu(x, 1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mixed_devices_error():
    with pytest.raises(RuntimeError, match=r"torch_ops\.gelu_backward: expected input to be on the device of grad_output"):
        OPS.gelu_backward(torch.randn(4, 3, device="cuda"), torch.randn(4, 3))


def test_torch_function_override_is_honoured():
    seen = []

    class Traced(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.randn(4, 6).as_subclass(Traced)
    torch_ops.gelu(x)
    torch_ops.swiglu(x)
    # the functional op itself is handed to the override first, as torch.nn.functional does
    assert torch_ops.gelu in seen and torch_ops.swiglu in seen


FUNCTIONALS = ["relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "glu", "swiglu", "geglu"]


@pytest.mark.parametrize("name", FUNCTIONALS)
def test_fx_symbolic_trace(name):
    """FX records torch_ops.<op> as one call_function node, as it records F.<op>."""
    fn = getattr(torch_ops, name)

    class M(torch.nn.Module):
        def forward(self, x):
            return fn(x) * 2

    gm = torch.fx.symbolic_trace(M())
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"][0] is fn
    x = torch.randn(3, 8)
    torch.testing.assert_close(gm(x), fn(x) * 2)


# ----------------------------------------------------------------------------- modules

MODULES = [
    (torch_ops.nn.ReLU, torch.nn.ReLU, [{}, {"inplace": True}]),
    (torch_ops.nn.LeakyReLU, torch.nn.LeakyReLU, [{}, {"negative_slope": 0.2, "inplace": True}]),
    (torch_ops.nn.GELU, torch.nn.GELU, [{}, {"approximate": "tanh"}]),
    (torch_ops.nn.SiLU, torch.nn.SiLU, [{}, {"inplace": True}]),
    (torch_ops.nn.Sigmoid, torch.nn.Sigmoid, [{}]),
    (torch_ops.nn.Tanh, torch.nn.Tanh, [{}]),
    (torch_ops.nn.GLU, torch.nn.GLU, [{}, {"dim": 0}]),
]


@pytest.mark.parametrize("ours,ref,variants", MODULES, ids=[m[0].__name__ for m in MODULES])
def test_modules_are_drop_ins(ours, ref, variants):
    for kw in variants:
        m, r = ours(**kw), ref(**kw)
        assert isinstance(m, ref) and repr(m) == repr(r)
        assert m.state_dict().keys() == r.state_dict().keys()
        x = torch.randn(4, 6, dtype=torch.float64)
        xa, xb = x.clone(), x.clone()
        torch.testing.assert_close(m(xa), r(xb))
        torch.testing.assert_close(xa, xb)  # in place or not, as torch.nn's


def test_gated_modules():
    m = torch_ops.nn.SwiGLU()
    assert repr(m) == "SwiGLU(dim=-1)" and list(m.parameters()) == []
    g = torch_ops.nn.GEGLU(dim=1, approximate="tanh")
    assert repr(g) == "GEGLU(dim=1, approximate='tanh')"
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), _swiglu_ref(x))
    torch.testing.assert_close(g(x), _geglu_ref(x, 1, "tanh"))


def test_convert_learns_activations():
    class OwnForward(torch.nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.GELU("tanh"), torch.nn.SiLU(inplace=True), torch.nn.LeakyReLU(0.3),
        torch.nn.Sigmoid(), torch.nn.Tanh(), torch.nn.GLU(), OwnForward(),
    ).double()  # fmt: skip
    x = torch.randn(3, 4, dtype=torch.float64)
    before = model(x)
    _, replaced = torch_ops.nn.convert(model, report=True)
    assert [n for n, _ in replaced] == ["0", "1", "2", "3", "4", "5", "6", "7"]
    types = [type(m) for m in model]
    assert types[1:8] == [torch_ops.nn.ReLU, torch_ops.nn.GELU, torch_ops.nn.SiLU, torch_ops.nn.LeakyReLU, torch_ops.nn.Sigmoid, torch_ops.nn.Tanh, torch_ops.nn.GLU]
    assert types[8] is OwnForward
    assert model[2].approximate == "tanh" and model[3].inplace and model[4].negative_slope == 0.3
    torch.testing.assert_close(model(x), before)
    with torch.profiler.profile() as prof:
        model(x)
    names = {e.name for e in prof.events()}
    for op in ("relu", "gelu", "silu_", "leaky_relu", "sigmoid", "tanh", "glu"):
        assert f"torch_ops::{op}" in names, op


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "glu", "swiglu", "geglu"])
def test_forward_mode_ad_is_refused_loudly(name):
    """A C++ autograd node has no jvp: torch.func.jvp must raise, not return a zero tangent."""
    x = torch.randn(3, 4, dtype=torch.float64)
    fn = getattr(torch_ops, name)
    with pytest.raises(RuntimeError, match=rf"torch_ops\.{name}: forward-mode AD"):
        torch.func.jvp(fn, (x,), (torch.ones_like(x),))
