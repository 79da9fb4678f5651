"""fused_linear: act(F.linear(...)) in one op. Forward and backward against the eager
composition for every activation and dtype, gradcheck and gradgradcheck, what is saved,
opcheck, torch.compile, errors, the Function class, FusedLinear and convert(fuse=True)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
from conftest import ALL_DEVICES, TOL, device_dtype_params

OPS = torch.ops.torch_ops
ACTS = [None, "relu", "gelu", "gelu_tanh", "silu"]
EAGER = {
    None: lambda t: t,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
}

# (input shape, weight shape, bias?): 1-D and batched inputs, zero-size, one block and
# several (CPU row blocks of >= 256 rows), no bias.
SHAPES = [
    ((7, 5), (3, 5), True),
    ((7, 5), (3, 5), False),
    ((5,), (3, 5), True),
    ((2, 4, 5), (3, 5), True),
    ((0, 5), (3, 5), True),
    ((2, 0, 5), (3, 5), False),
    ((4, 0), (3, 0), True),
    ((4, 5), (0, 5), True),
    ((700, 9), (33, 9), True),  # three CPU blocks, the last one short
]


def reference(x, w, b, act):
    return EAGER[act](F.linear(x, w, b))


def make_args(shapes, device, dtype, requires_grad=True, scale=1.0):
    xs, ws, has_bias = shapes
    x = (torch.randn(xs, device=device, dtype=torch.float64) * scale).to(dtype).requires_grad_(requires_grad)
    w = torch.randn(ws, device=device, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)
    b = torch.randn(ws[0], device=device, dtype=torch.float64).to(dtype).requires_grad_(requires_grad) if has_bias else None
    return [x, w, b]


def clone_args(args):
    return [None if a is None else a.detach().clone().requires_grad_(a.requires_grad) for a in args]


def _tol(dtype, act):
    # bfloat16/half: one rounding of the GEMM result before the activation, as eager, but
    # the GEMM of a row block may round differently from the whole GEMM's.
    return TOL[dtype]


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("act", ACTS, ids=str)
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}{'b' if s[2] else ''}")
def test_forward_backward_match_torch(device, dtype, act, shapes):
    torch.manual_seed(0)
    args = make_args(shapes, device, dtype)
    ref_args = clone_args(args)
    y = torch_ops.fused_linear(*args, activation=act)
    y_ref = reference(*ref_args, act)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype and y.device == y_ref.device
    torch.testing.assert_close(y, y_ref, **_tol(dtype, act))
    gy = torch.randn_like(y_ref)
    y.backward(gy)
    y_ref.backward(gy)
    for a, r in zip(args, ref_args):
        if a is not None:
            assert a.grad.shape == a.shape
            torch.testing.assert_close(a.grad, r.grad, **_tol(dtype, act))


@pytest.mark.parametrize("act", ACTS, ids=str)
def test_noncontiguous_inputs(act):
    x = torch.randn(6, 16, dtype=torch.float64)[:, ::2].requires_grad_()  # (6, 8), strided
    w = torch.randn(8, 5, dtype=torch.float64).t().requires_grad_()  # (5, 8), transposed
    b = torch.randn(10, dtype=torch.float64)[::2].requires_grad_()
    assert not x.is_contiguous() and not w.is_contiguous() and not b.is_contiguous()
    y = torch_ops.fused_linear(x, w, b, act)
    ref_args = clone_args([x, w, b])
    y_ref = reference(*ref_args, act)
    torch.testing.assert_close(y, y_ref)
    gy = torch.randn(5, 6, dtype=torch.float64).t()  # a transposed gradient
    y.backward(gy)
    y_ref.backward(gy)
    for a, r in zip([x, w, b], ref_args):
        torch.testing.assert_close(a.grad, r.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("act", ACTS, ids=str)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("entry", ["functional", "Function"])
def test_gradcheck_gradgradcheck(device, act, bias, entry):
    torch.manual_seed(1)
    x, w, b = make_args(((3, 2, 4), (5, 4), bias), device, torch.float64)
    args = (x, w, b) if bias else (x, w)
    if entry == "functional":
        fn = lambda x, w, b=None: torch_ops.fused_linear(x, w, b, act)  # noqa: E731
    else:
        fn = lambda x, w, b=None: torch_ops.autograd.FusedLinearFunction.apply(x, w, b, act)  # noqa: E731
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("act", ["gelu", "silu", "relu"])
def test_double_backward_matches_torch(act):
    torch.manual_seed(2)
    args = make_args(((6, 4), (3, 4), True), "cpu", torch.float64)
    ref_args = clone_args(args)
    outs = []
    for fn, a in ((lambda *t: torch_ops.fused_linear(*t, activation=act), args), (lambda *t: reference(*t, act), ref_args)):
        y = fn(*a)
        g = torch.autograd.grad(y.pow(2).sum(), a, create_graph=True)
        outs.append(torch.autograd.grad(sum(t.sin().sum() for t in g), a))
    for o, r in zip(*outs):
        torch.testing.assert_close(o, r)


@pytest.mark.parametrize("act", ACTS, ids=str)
@pytest.mark.parametrize("entry", ["functional", "Function"])
def test_saves_only_what_is_needed(act, entry):
    """The pre-activation only for gelu/silu, the output for relu; x only when W needs a
    gradient and W only when x does (no activation or relu)."""
    x = torch.randn(4, 3, dtype=torch.float64)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if entry == "functional":
            y = torch_ops.fused_linear(x, w, b, act)
        else:
            y = torch_ops.autograd.FusedLinearFunction.apply(x, w, b, act)
    shapes = sorted(tuple(t.shape) for t in saved)
    if act is None:
        assert shapes == [(4, 3)]  # x only (x needs no gradient, so W is not saved)
    elif act == "relu":
        assert shapes == [(4, 2), (4, 3)] and any(t is y or t.data_ptr() == y.data_ptr() for t in saved)
    else:
        assert (4, 2) in shapes  # the pre-activation
        pre = [t for t in saved if tuple(t.shape) == (4, 2)][0]
        torch.testing.assert_close(pre, F.linear(x, w, b))
    y.sum().backward()


def test_no_grad_saves_nothing_and_matches():
    x, w, b = make_args(((300, 16), (8, 16), True), "cpu", torch.float32, requires_grad=False)
    for act in ACTS:
        torch.testing.assert_close(torch_ops.fused_linear(x, w, b, act), reference(x, w, b, act))


def test_backward_does_not_write_into_inputs():
    x, w, b = make_args(((300, 6), (4, 6), True), "cpu", torch.float64)
    before = [t.detach().clone() for t in (x, w, b)]
    y = torch_ops.fused_linear(x, w, b, "gelu")
    gy = torch.randn_like(y)
    gy_before = gy.clone()
    y.backward(gy)
    for t, t0 in zip((x, w, b), before):
        assert torch.equal(t.detach(), t0)
    assert torch.equal(gy, gy_before)


def test_bias_gradient_is_deterministic_across_threads():
    """The backward's bias reduction runs over a fixed partition of the rows."""
    torch.manual_seed(3)
    x, w, b = make_args(((5000, 32), (64, 32), True), "cpu", torch.float32)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            b.grad = None
            torch_ops.fused_linear(x, w, b, "silu").sum().backward()
            grads.append(b.grad.clone())
    finally:
        torch.set_num_threads(threads)
    for g in grads[1:]:
        assert torch.equal(g, grads[0])


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "silu"])
def test_act_grad_op(act, cpu_isa):
    """fused_linear_act_grad against the activation's backward and a float64 column sum,
    on every CPU kernel variant, for shapes around the vector width and the row blocks."""
    saved_from_output = act == "relu"
    for rows, cols in ((1, 1), (3, 17), (257, 33), (4100, 16)):
        pre = torch.randn(rows, cols, dtype=torch.float32) * 3
        s = F.relu(pre) if saved_from_output else pre
        g = torch.randn(rows, cols, dtype=torch.float32)
        gp, gb = OPS.fused_linear_act_grad(g, s, act, True)
        if saved_from_output:
            ref = torch.where(s > 0, g, torch.zeros_like(g))
        else:
            p = pre.clone().requires_grad_()
            ref = torch.autograd.grad(EAGER[act](p), p, g)[0]
        torch.testing.assert_close(gp, ref, **TOL[torch.float32])
        torch.testing.assert_close(gb, gp.double().sum(0).float(), rtol=1e-5, atol=1e-4)
        gp2, gb2 = OPS.fused_linear_act_grad(g, s, act, False)
        assert torch.equal(gp2, gp) and gb2.shape == (0,)


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    f64 = dict(device=device, dtype=torch.float64)
    out = []
    for act in ACTS:
        x = torch.randn(2, 3, 4, **f64, requires_grad=True)
        w = torch.randn(5, 4, **f64, requires_grad=True)
        b = torch.randn(5, **f64, requires_grad=True)
        out.append((OPS.fused_linear.default, (x, w, b, act)))
        out.append((OPS.fused_linear.default, (x, w, None, act)))
        if act is not None:
            pre = F.linear(x, w, b).detach()
            s = F.relu(pre) if act == "relu" else pre
            gy = torch.randn(2, 3, 5, **f64)
            out.append((OPS.fused_linear_preact.default, (x.detach(), w.detach(), b.detach(), act if act != "relu" else "gelu")))
            out.append((OPS.fused_linear_act_grad.default, (gy, s, act, True)))
            out.append((OPS.fused_linear_act_grad.default, (gy.requires_grad_(), s.requires_grad_(), act, False)))
    return out


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("act", ACTS, ids=str)
def test_compile_forward_backward(device, dynamic, act):
    torch._dynamo.reset()  # fn's code object is shared by every parametrisation
    f64 = dict(device=device, dtype=torch.float64)
    w0, b0 = torch.randn(3, 4, **f64), torch.randn(3, **f64)

    def fn(x, w, b):
        return torch_ops.fused_linear(x, w, b, activation=act) * 2

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (5, 6, 9):
        x = torch.randn(2, n, 4, **f64, requires_grad=True)
        args = [x, w0.clone().requires_grad_(), b0.clone().requires_grad_()]
        ref_args = clone_args(args)
        out, ref = compiled(*args), fn(*ref_args)
        torch.testing.assert_close(out, ref)
        gy = torch.randn_like(out)
        torch.testing.assert_close(torch.autograd.grad(out, args, gy), torch.autograd.grad(ref, ref_args, gy))


def test_compile_inductor_module():
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch_ops.nn.FusedLinear(8, 16, activation="silu"), torch_ops.nn.FusedLinear(16, 4, activation=None))
    x = torch.randn(10, 8)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# ----------------------------------------------------------------------------- errors


def test_errors():
    x, w, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(2)
    with pytest.raises(ValueError, match="expected activation to be None, 'relu', 'gelu', 'gelu_tanh' or 'silu', got 'tanh'"):
        torch_ops.fused_linear(x, w, b, "tanh")
    with pytest.raises(TypeError, match="expected activation to be a str or None"):
        torch_ops.fused_linear(x, w, b, 3)
    with pytest.raises(RuntimeError, match=r"torch_ops.fused_linear: expected input.size\(-1\) to equal in_features"):
        torch_ops.fused_linear(torch.randn(4, 5), w, b, "relu")
    with pytest.raises(RuntimeError, match="torch_ops.fused_linear: expected weight to be 2-D"):
        torch_ops.fused_linear(x, torch.randn(3), None, "relu")
    with pytest.raises(RuntimeError, match="torch_ops.fused_linear: expected bias to have"):
        torch_ops.fused_linear(x, w, torch.randn(2, dtype=torch.float64), "gelu")
    with pytest.raises(TypeError, match="expected input, weight"):
        torch_ops.fused_linear(x, [1.0], None)
    with pytest.raises(ValueError, match="got 'tanh'"):
        OPS.fused_linear(x, w, b, "tanh")
    x_before = x.clone()
    with pytest.raises(RuntimeError):
        torch_ops.fused_linear(x, torch.randn(2, 4), b, "gelu")
    assert torch.equal(x, x_before)


def test_torch_function_and_fx():
    gm = torch.fx.symbolic_trace(torch_ops.nn.FusedLinear(4, 5, activation="relu"))
    assert any(n.op == "call_function" and n.target is torch_ops.fused_linear for n in gm.graph.nodes)
    x = torch.randn(3, 4)
    torch.testing.assert_close(gm(x), F.relu(F.linear(x, gm.weight, gm.bias)))


def test_autocast_cpu():
    x, w, b = torch.randn(8, 4), torch.randn(3, 4), torch.randn(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch_ops.fused_linear(x, w, b, "gelu")
        y_ref = F.gelu(F.linear(x, w, b))
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref, **TOL[torch.bfloat16])


# ----------------------------------------------------------------------------- modules


@pytest.mark.parametrize("act", ACTS, ids=str)
def test_fused_linear_module(act):
    torch.manual_seed(5)
    ref = torch.nn.Linear(6, 4)
    m = torch_ops.nn.FusedLinear(6, 4, activation=act)
    assert isinstance(m, torch.nn.Linear) and m.activation == act
    assert set(m.state_dict()) == set(ref.state_dict())
    m.load_state_dict(ref.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(m(x), reference(x, ref.weight, ref.bias, act))
    ref.load_state_dict(m.state_dict())
    assert f"activation={act!r}" in repr(m)
    # nn.Linear's initialisation: the same generator draws give the same parameters
    torch.manual_seed(6)
    a = torch_ops.nn.FusedLinear(6, 4, bias=False, activation=act)
    torch.manual_seed(6)
    r = torch.nn.Linear(6, 4, bias=False)
    assert a.bias is None and torch.equal(a.weight, r.weight)
    with pytest.raises(ValueError):
        torch_ops.nn.FusedLinear(6, 4, activation="tanh")


def _mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.SiLU()),
        torch.nn.Linear(16, 8),
        torch.nn.Tanh(),  # not fusable: stays a (converted) Tanh
        torch.nn.Linear(8, 4),
        torch.nn.GELU(),
    ).double()


def test_convert_fuse_keeps_outputs_gradients_and_state_dict():
    torch.manual_seed(7)
    model = _mlp()
    ref = copy.deepcopy(model)
    keys = list(model.state_dict())
    model, replaced = torch_ops.nn.convert(model, fuse=True, report=True)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["FusedLinear", "Identity", "FusedLinear", "Identity", "Sequential", "Linear", "Tanh", "FusedLinear", "Identity"]
    assert [m.activation for m in model if isinstance(m, torch_ops.nn.FusedLinear)] == ["gelu_tanh", "relu", "gelu"]
    assert isinstance(model[4][0], torch_ops.nn.FusedLinear) and model[4][0].activation == "silu"
    assert isinstance(model[6], torch_ops.nn.Tanh) and type(model[5]) is torch_ops.nn.Linear
    assert list(model.state_dict()) == keys
    assert ("0", "Linear") in replaced and ("1", "GELU") in replaced and ("4.0", "Linear") in replaced
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = model(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref)
    y.sum().backward()
    y_ref.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    model.load_state_dict(ref.state_dict())


def test_convert_without_fuse_leaves_pairs():
    model = torch_ops.nn.convert(_mlp())
    assert type(model[0]) is torch_ops.nn.Linear and type(model[1]) is torch_ops.nn.GELU
