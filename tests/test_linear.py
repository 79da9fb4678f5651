"""linear: forward and backward against torch.nn.functional.linear, gradcheck and
gradgradcheck, opcheck, torch.compile, errors, the Function class, modules, convert()."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
from conftest import ALL_DEVICES, TOL, device_dtype_params

OPS = torch.ops.torch_ops

# (input shape, weight shape, bias shape or None): every kind of input F.linear accepts.
SHAPES = [
    ((7, 5), (3, 5), (3,)),
    ((7, 5), (3, 5), None),
    ((5,), (3, 5), (3,)),  # 1-D input
    ((2, 4, 5), (3, 5), (3,)),  # batched
    ((2, 3, 4, 5), (6, 5), None),  # more leading dims
    ((0, 5), (3, 5), (3,)),  # no rows
    ((2, 0, 5), (3, 5), (3,)),  # zero-size batch dim
    ((4, 0), (3, 0), (3,)),  # in_features = 0: the output is the bias
    ((4, 5), (0, 5), (0,)),  # out_features = 0
    ((4, 5), (5,), None),  # 1-D weight: the feature dimension is dropped
    ((2, 4, 5), (5,), ()),  # ... with a 0-D bias (F.linear refuses this for a 2-D input)
    ((4, 5), (3, 5), ()),  # 0-D bias broadcasts
]


def make(shape, device, dtype, requires_grad=False, seed=None):
    if shape is None:
        return None
    t = torch.randn(shape, device=device, dtype=torch.float64)
    return t.to(dtype).requires_grad_(requires_grad)


def clone_args(args):
    return [None if a is None else a.detach().clone().requires_grad_(a.requires_grad) for a in args]


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_match_torch(device, dtype, shapes):
    torch.manual_seed(0)
    args = [make(s, device, dtype, requires_grad=True) for s in shapes]
    ref_args = clone_args(args)
    y = torch_ops.linear(*args)
    y_ref = F.linear(*ref_args)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype and y.device == y_ref.device
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    gy = torch.randn_like(y_ref)
    y.backward(gy)
    y_ref.backward(gy)
    for a, r in zip(args, ref_args):
        if a is not None:
            assert a.grad.shape == a.shape
            torch.testing.assert_close(a.grad, r.grad, **TOL[dtype])


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_float32_against_float64(device):
    """float32 results are as accurate as torch's own (reference in float64)."""
    torch.manual_seed(0)
    x = torch.randn(300, 64, 70, device=device, dtype=torch.float64)
    w = torch.randn(50, 70, device=device, dtype=torch.float64)
    b = torch.randn(50, device=device, dtype=torch.float64)
    args32 = [t.float().requires_grad_() for t in (x, w, b)]
    y = torch_ops.linear(*args32)
    ref = F.linear(x, w, b)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-4)
    gy = torch.randn_like(ref)
    y.backward(gy.float())
    # bias gradient: a sum over 19200 rows, accumulated by blocks
    torch.testing.assert_close(args32[2].grad.double(), gy.sum((0, 1)), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(args32[1].grad.double(), gy.reshape(-1, 50).t() @ x.reshape(-1, 70), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_noncontiguous_and_expanded(device):
    torch.manual_seed(0)
    base = torch.randn(6, 10, 8, device=device, dtype=torch.float64)
    cases = [
        (base.transpose(0, 1), torch.randn(8, 4, device=device, dtype=torch.float64).t()),  # transposed input and weight
        (base[:, ::2, 1:7], torch.randn(7, 6, device=device, dtype=torch.float64)[::2]),  # strided input and weight
        (torch.randn(1, 8, device=device, dtype=torch.float64).expand(5, 8), torch.randn(8, 3, device=device, dtype=torch.float64).t()),
        (torch.randn(8, device=device, dtype=torch.float64).expand(3, 4, 8), torch.randn(2, 8, device=device, dtype=torch.float64)),
    ]
    for x, w in cases:
        assert not (x.is_contiguous() and w.is_contiguous())
        b = torch.randn(w.shape[0], device=device, dtype=torch.float64)[None].expand(2, -1)[1]  # strided view
        xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
        xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
        y, yr = torch_ops.linear(xs, ws, bs), F.linear(xr, wr, br)
        torch.testing.assert_close(y, yr)
        # an expanded gradient (stride 0 everywhere), as from y.sum().backward()
        y.sum().backward()
        yr.sum().backward()
        for a, r in ((xs, xr), (ws, wr), (bs, br)):
            torch.testing.assert_close(a.grad, r.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("rows,cols", [(4096, 3), (3, 5000), (1000, 1000), (1, 1), (257, 33), (0, 7)])
def test_grad_bias_kernel(device, rows, cols, cpu_isa):
    """The bias reduction on shapes that take each of its paths (tall, wide, tails), with
    each CPU instruction-set variant."""
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        g = torch.randn(rows, cols, device=device, dtype=torch.float64)
        out = OPS.linear_grad_bias(g.to(dtype))
        assert out.dtype == dtype and out.shape == (cols,)
        ref = g.to(dtype).double().sum(0)
        tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol * max(1.0, rows**0.5))
        # rows stored with a stride (a slice) give the same result
        wide = torch.randn(rows, cols + 3, device=device, dtype=torch.float64).to(dtype)
        torch.testing.assert_close(OPS.linear_grad_bias(wide[:, 1 : cols + 1]), OPS.linear_grad_bias(wide[:, 1 : cols + 1].contiguous()), rtol=0, atol=0)


# ----------------------------------------------------------------------------- autograd


GRAD_SHAPES = [
    ((4, 3), (2, 3), (2,)),
    ((4, 3), (2, 3), None),
    ((3,), (2, 3), (2,)),  # 1-D
    ((2, 3, 3), (2, 3), (2,)),  # batched
    ((2, 3, 2), (2,), ()),  # 1-D weight, 0-D bias
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("shapes", GRAD_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fn", [torch_ops.linear, torch_ops.autograd.LinearFunction.apply], ids=["functional", "Function"])
def test_gradcheck_gradgradcheck(device, shapes, fn):
    if fn is not torch_ops.linear and (len(shapes[1]) != 2 or (shapes[2] is not None and len(shapes[2]) != 1)):
        pytest.skip("LinearFunction takes the op's canonical (out, in) weight and (out,) bias")
    torch.manual_seed(0)
    args = tuple(make(s, device, torch.float64, requires_grad=True) for s in shapes)
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_gradgradcheck_noncontiguous(device):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, device=device, dtype=torch.float64)[:, ::2].requires_grad_()
    w = torch.randn(4, 3, device=device, dtype=torch.float64).t().requires_grad_()
    b = torch.randn(3, device=device, dtype=torch.float64, requires_grad=True)
    assert not x.is_contiguous() and not w.is_contiguous()
    assert gradcheck(torch_ops.linear, (x, w, b))
    assert gradgradcheck(torch_ops.linear, (x, w, b))


def test_double_backward_matches_torch():
    """Hessian-vector products through our ops equal torch's."""
    torch.manual_seed(0)
    ins = [torch.randn(s, dtype=torch.float64) for s in ((5, 4), (3, 4), (3,))]
    results = []
    for fn in (torch_ops.linear, F.linear):
        x, w, b = (t.clone().requires_grad_() for t in ins)
        y = fn(x, w, b)
        gy = torch.ones_like(y, requires_grad=True)
        gx, gw, gb = torch.autograd.grad(y, (x, w, b), gy, create_graph=True)
        loss = (gx.sin().sum() + (gw * gw).sum() + gb.pow(3).sum())
        results.append(torch.autograd.grad(loss, (x, w, b, gy), allow_unused=True, materialize_grads=True))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r)


def test_third_order():
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    # the grads of (x W^T)^2 summed, third-order in (x, w)
    assert gradgradcheck(lambda x, w: torch.autograd.grad(torch_ops.linear(x, w).pow(2).sum(), (x, w), create_graph=True), (x, w))


@pytest.mark.parametrize("requires", [(True, True, True), (True, False, False), (False, True, True), (False, False, True)])
@pytest.mark.parametrize("fn", [torch_ops.linear, torch_ops.autograd.LinearFunction.apply], ids=["functional", "Function"])
def test_saves_only_what_is_needed(requires, fn):
    """x is saved only when W needs a gradient, W only when x does; None grads for the rest."""
    x = torch.randn(4, 3, requires_grad=requires[0])
    w = torch.randn(2, 3, requires_grad=requires[1])
    b = torch.randn(2, requires_grad=requires[2])
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x, w, b)
    ids = {id(t) if not t._is_view() else id(t._base) for t in saved}
    assert (id(x) in ids) == requires[1]
    assert (id(w) in ids) == requires[0]
    y.sum().backward()
    for t, r in zip((x, w, b), requires):
        assert (t.grad is not None) == r


def test_function_returns_none_for_missing_bias():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(2, 3, requires_grad=True)
    y = torch_ops.autograd.LinearFunction.apply(x, w, None)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4, 2) @ w.detach())


def test_backward_does_not_write_into_inputs():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(2, 3, requires_grad=True)
    gy = torch.randn(4, 2)
    copies = [t.detach().clone() for t in (x, w, gy)]
    y = torch_ops.linear(x, w)
    y.backward(gy)
    for t, c in zip((x, w, gy), copies):
        assert torch.equal(t.detach(), c)


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    f64 = dict(device=device, dtype=torch.float64)
    x = torch.randn(2, 3, 4, **f64, requires_grad=True)
    w = torch.randn(5, 4, **f64, requires_grad=True)
    b = torch.randn(5, **f64, requires_grad=True)
    gy = torch.randn(2, 3, 5, **f64, requires_grad=True)
    return [
        (OPS.linear.default, (x, w, b)),
        (OPS.linear.default, (x, w, None)),
        (OPS.linear.default, (torch.randn(4, **f64), w, b)),
        (OPS.linear.default, (x.detach().transpose(0, 1), w.detach().t().contiguous().t(), b.detach())),
        (OPS.linear.default, (x.float().detach(), w.float().detach(), b.float().detach())),
        (OPS.linear_grad_weight.default, (gy, x)),
        (OPS.linear_grad_bias.default, (gy,)),
        (OPS.linear_backward.default, (gy, x, w, [True, True, True])),
        (OPS.linear_backward.default, (gy, None, w, [True, False, False])),
    ]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)  # raises on any failed check


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_compile_forward_backward(device, dynamic, bias):
    torch._dynamo.reset()
    f64 = dict(device=device, dtype=torch.float64)
    w0 = torch.randn(3, 4, **f64)
    b0 = torch.randn(3, **f64) if bias else None

    def fn(x, w, b):
        return torch_ops.linear(x, w, b).tanh().sum()

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for n in (5, 6, 9):
        x = torch.randn(2, n, 4, **f64, requires_grad=True)
        args = [x, w0.clone().requires_grad_(), None if b0 is None else b0.clone().requires_grad_()]
        ref_args = clone_args(args)
        out, ref = compiled(*args), fn(*ref_args)
        torch.testing.assert_close(out, ref)
        out.backward()
        ref.backward()
        for a, r in zip(args, ref_args):
            if a is not None:
                torch.testing.assert_close(a.grad, r.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_inductor_module_and_function(device):
    """The real backend (inductor) on the module and on the Function class."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch_ops.nn.Linear(4, 8), torch.nn.ReLU(), torch_ops.nn.Linear(8, 2)).to(device)
    x = torch.randn(5, 4, device=device)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)

    fn = torch.compile(lambda x, w, b: torch_ops.autograd.LinearFunction.apply(x, w, b), fullgraph=True)
    w = torch.randn(3, 4, device=device, requires_grad=True)
    b = torch.randn(3, device=device, requires_grad=True)
    fn(x, w, b).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(5, 3, device=device).t() @ x)
    torch.testing.assert_close(b.grad, torch.full((3,), 5.0, device=device))


# ----------------------------------------------------------------------------- errors


def _error_cases():
    x = torch.randn(4, 3)
    w = torch.randn(2, 3)
    b = torch.randn(2)
    return [
        ((x, torch.randn(2, 3, 1), b), r"torch_ops\.linear: expected weight to be 2-D, got 3-D"),
        ((torch.randn(()), w, b), r"torch_ops\.linear: expected input to have at least 1 dimension"),
        ((torch.randn(4, 5), w, b), r"torch_ops\.linear: expected input\.size\(-1\) to equal in_features = weight\.size\(1\) = 3"),
        ((x, w, torch.randn(3)), r"torch_ops\.linear: expected bias(\.size\(0\) == 2| to broadcast to the output shape)"),
        ((x, w, torch.randn(2, 2)), r"torch_ops\.linear: expected bias to (be 1-D|broadcast to the output shape)"),
        ((x, w.double(), b), r"torch_ops\.linear: expected weight to have the dtype of input \(Float\), got Double"),
        ((x, w, b.double()), r"torch_ops\.linear: expected bias to have the dtype of input \(Float\), got Double"),
        ((x.long(), w.long(), b.long()), r"torch_ops\.linear: expected input to have a floating-point dtype"),
        ((x, w, b.to("meta")), r"torch_ops\.linear: expected bias to be on the device of input"),
    ]


@pytest.mark.parametrize("case", range(len(_error_cases())))
@pytest.mark.parametrize("entry", ["functional", "op"])
def test_errors_are_clear_and_leave_inputs_untouched(case, entry):
    args, msg = _error_cases()[case]
    before = [a.clone() for a in args]
    fn = torch_ops.linear if entry == "functional" else OPS.linear
    with pytest.raises(RuntimeError, match=msg):
        fn(*args)
    for a, c in zip(args, before):
        if a.device.type != "meta":
            assert torch.equal(a, c)


def test_type_errors():
    with pytest.raises(TypeError):
        torch_ops.linear([1.0, 2.0], torch.randn(2, 2))
    with pytest.raises(TypeError):
        torch_ops.linear(torch.randn(2, 2), torch.randn(2, 2), 3.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mixed_devices_error():
    with pytest.raises(RuntimeError, match=r"torch_ops\.linear: expected weight to be on the device of input"):
        torch_ops.linear(torch.randn(4, 3, device="cuda"), torch.randn(2, 3))


def test_torch_function_override_is_honoured():
    """A tensor subclass with __torch_function__ sees the call (it goes through torch.ops)."""
    seen = []

    class Traced(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.randn(4, 3).as_subclass(Traced)
    y = torch_ops.linear(x, torch.randn(2, 3))
    assert y.shape == (4, 2)
    assert torch_ops.linear in seen


def test_fx_symbolic_trace():
    """FX sees torch_ops.linear as one call, as it sees F.linear."""
    gm = torch.fx.symbolic_trace(torch_ops.nn.Linear(4, 5))
    assert any(n.op == "call_function" and n.target is torch_ops.linear for n in gm.graph.nodes)
    x = torch.randn(3, 4)
    torch.testing.assert_close(gm(x), F.linear(x, gm.weight, gm.bias))


@pytest.mark.parametrize("bias_shape", [(1,), (4, 3), (1, 3), ()])
def test_bias_broadcasting(bias_shape):
    """Biases F.linear accepts beyond (out,): anything that broadcasts to the output."""
    x = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True) if bias_shape != (4, 3) else torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(bias_shape, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(torch_ops.linear(x, w, b), F.linear(x, w, b))
    assert gradcheck(torch_ops.linear, (x, w, b))
    with pytest.raises(RuntimeError, match="torch_ops.linear: expected bias to broadcast to the output shape"):
        torch_ops.linear(x, w, torch.randn(7, 1, 1, 1, 3, dtype=torch.float64))


def test_autocast_cpu():
    """Under autocast linear runs in bfloat16 like F.linear, and the backward works."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    ref = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch_ops.linear(x, w, b)
        y_ref = F.linear(*ref)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref)
    y.float().pow(2).sum().backward()
    y_ref.float().pow(2).sum().backward()
    for a, r in zip((x, w, b), ref):
        assert a.grad.dtype == torch.float32
        torch.testing.assert_close(a.grad, r.grad, rtol=2e-2, atol=2e-2)  # bfloat16 products: as torch's
    # under autocast, a float32 weight with a bfloat16 input is accepted, as by F.linear
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch_ops.linear(x.bfloat16(), w).dtype == torch.bfloat16


def test_forward_mode_ad_is_refused_loudly():
    x, w = torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(lambda a: torch_ops.linear(a, w), (x,), (torch.ones_like(x),))


def test_float8_is_refused():
    g = torch.randn(3, 4).to(torch.float8_e4m3fn)
    with pytest.raises(RuntimeError, match="torch_ops.linear_grad_bias: expected grad_output to have a floating-point dtype"):
        OPS.linear_grad_bias(g)


# ----------------------------------------------------------------------------- modules


@pytest.mark.parametrize("bias", [True, False])
def test_module_is_a_drop_in(bias):
    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    torch.manual_seed(0)
    ours = torch_ops.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    assert isinstance(ours, torch.nn.Linear)
    assert repr(ours) == repr(ref)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q), "same initialisation given the same seed"
    # state dicts both ways
    other = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    other.load_state_dict(ours.state_dict())
    ours.load_state_dict(torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64).state_dict())
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    m = torch_ops.nn.Linear(5, 3, device="meta", dtype=torch.float16)
    assert m.weight.device.type == "meta" and m.weight.dtype == torch.float16


class _OwnForward(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


def test_convert():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        torch.nn.ReLU(),
        torch.nn.MultiheadAttention(8, 2, batch_first=True),  # its out_proj is a Linear subclass
        _OwnForward(8, 8),
        torch.nn.Linear(8, 2, bias=False),
    ).double()
    model.eval()
    params = {n: p for n, p in model.named_parameters()}
    x = torch.randn(3, 4, dtype=torch.float64)
    h = model[1](model[0](x))
    before = (model[0](x), model[2](h, h, h, need_weights=False)[0], model[4](model[3](h)))

    out, replaced = torch_ops.nn.convert(model, report=True)
    assert out is model
    names = [n for n, _ in replaced]
    assert names == ["0", "1", "2", "2.out_proj", "4"], replaced  # "1": the ReLU, "2": MultiheadAttention
    assert type(model[0]) is torch_ops.nn.Linear and type(model[4]) is torch_ops.nn.Linear
    assert isinstance(model[2].out_proj, torch.nn.modules.linear.NonDynamicallyQuantizableLinear)
    assert type(model[3]) is _OwnForward  # its own forward: not safe to replace
    assert not model.training
    assert all(p is params[n] for n, p in model.named_parameters()), "the same parameter tensors"
    after = (model[0](x), model[2](h, h, h, need_weights=False)[0], model[4](model[3](h)))
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)
    # converting twice changes nothing; a root Linear converts in place
    assert torch_ops.nn.convert(model, report=True)[1] == []
    lin = torch.nn.Linear(2, 2)
    assert torch_ops.nn.convert(lin) is lin and type(lin) is torch_ops.nn.Linear
    lazy = torch.nn.LazyLinear(3)
    assert torch_ops.nn.convert(lazy, report=True)[1] == []


def test_converted_module_runs_our_kernel():
    model = torch_ops.nn.convert(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    with torch.profiler.profile() as prof:
        model(torch.randn(4, 3))
    assert any("torch_ops::linear" in e.name for e in prof.events())


# ----------------------------------------------------------------------------- build


def test_build_info():
    info = torch_ops.build_info()
    assert info["version"] == torch_ops.__version__
    assert info["built_with_torch"] == torch.__version__
    assert info["cpu_kernels"] is True
    assert isinstance(info["cuda_kernels"], bool)
    assert info["cpu_isa"] in ("default", "avx2", "avx512")
    if info["cuda_kernels"]:
        assert info["cuda_archs"], "a CUDA build names its architectures"
        assert info["cuda_version"]
    else:
        assert info["cuda_archs"] == []


def test_version_mismatch_message():
    from torch_ops import _load

    class OtherBuild:
        @staticmethod
        def build_info():
            return {"built_with_torch": "1.0.0"}

    with pytest.raises(ImportError, match=r"built against torch 1\.0\.0.*pip install --no-build-isolation"):
        _load._check_version(OtherBuild, "torch_ops._C")


def test_converted_model_pickles_and_loads_in_a_new_process(tmp_path):
    """convert() makes classes at run time for nn.Linear subclasses (MultiheadAttention's
    out_proj); torch.save / torch.load of the whole model work, also in a fresh process."""
    import subprocess
    import sys

    torch.manual_seed(0)
    model = torch_ops.nn.convert(torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval())
    x = torch.randn(2, 5, 16)
    path = tmp_path / "model.pt"
    torch.save({"model": model, "x": x, "y": model(x)}, path)
    loaded = torch.load(path, weights_only=False)["model"]
    assert type(loaded.self_attn.out_proj) is type(model.self_attn.out_proj)
    torch.testing.assert_close(loaded(x), model(x))
    check = (
        "import torch, torch_ops; d = torch.load(%r, weights_only=False); m = d['model'];"
        "assert isinstance(m.self_attn.out_proj, torch.nn.modules.linear.NonDynamicallyQuantizableLinear);"
        "assert type(m.self_attn.out_proj).forward is torch_ops.nn.Linear.forward;"
        "torch.testing.assert_close(m(d['x']), d['y'])" % str(path)
    )
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(torch_ops.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
