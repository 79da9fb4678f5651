"""norm: layer_norm, rms_norm, add_layer_norm, add_rms_norm. Forward and backward against
torch in every dtype (mixed-precision weights included), gradcheck and gradgradcheck,
opcheck, torch.compile, bitwise-deterministic weight/bias gradients, every CPU kernel
variant, errors, the Function classes, modules and convert()."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import torch_ops
from conftest import ALL_DEVICES, AUTOCAST, TOL, check_autocast, check_autocast_dtypes_fake_cuda, device_dtype_params

OPS = torch.ops.torch_ops
AF = torch_ops.autograd


def _ref_add_layer_norm(x, r, ns, w=None, b=None, eps=1e-5):
    s = x + r
    return F.layer_norm(s, ns, w, b, eps), s


def _ref_add_rms_norm(x, r, ns, w=None, eps=None):
    s = x + r
    return F.rms_norm(s, ns, w, eps), s


# name -> (ours, reference, has residual, has bias)
OPS_TABLE = {
    "layer_norm": (torch_ops.layer_norm, F.layer_norm, False, True),
    "rms_norm": (torch_ops.rms_norm, F.rms_norm, False, False),
    "add_layer_norm": (torch_ops.add_layer_norm, _ref_add_layer_norm, True, True),
    "add_rms_norm": (torch_ops.add_rms_norm, _ref_add_rms_norm, True, False),
}

# (input shape, normalized_shape)
SHAPES = [
    ((7, 5), (5,)),
    ((2, 3, 4), (3, 4)),
    ((6,), 6),  # 1-D input, int normalized_shape
    ((3, 37), [37]),  # vector body + scalar tail
    ((2, 2, 130), (130,)),
    ((0, 6), (6,)),  # no rows
    ((2, 0, 3), (3,)),  # zero-size batch dimension
    ((3, 0), (0,)),  # empty rows
]


def _make(shape, device, dtype, requires_grad=True, scale=1.0, offset=0.0):
    t = torch.randn(shape, device=device, dtype=torch.float64) * scale + offset
    return t.to(dtype).requires_grad_(requires_grad)


def _args(name, shape, ns, device, dtype, affine=True, param_dtype=None, requires_grad=True):
    """Positional arguments (ours and the reference take the same), and the keyword eps."""
    _, _, add, has_bias = OPS_TABLE[name]
    nshape = (ns,) if isinstance(ns, int) else tuple(ns)
    pdt = param_dtype or dtype
    args = [_make(shape, device, dtype, requires_grad, offset=0.5)]
    if add:
        args.append(_make(shape, device, dtype, requires_grad))
    args.append(ns)
    if affine:
        args.append(_make(nshape, device, pdt, requires_grad, scale=0.5, offset=1.0))
        if has_bias:
            args.append(_make(nshape, device, pdt, requires_grad))
    return args


def _clone(args):
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]


REDUCED = (torch.float16, torch.bfloat16)


def _reference(name, args, dtype):
    """The reference outputs and its differentiable inputs. float64/float32: torch's op in
    the same dtype. float16/bfloat16: torch's op in float64 on the same (rounded) inputs,
    with x + r rounded to the dtype as it is in the dtype, rounded to the dtype at the end
    (torch's own float16/bfloat16 backward rounds its intermediates and is less accurate
    than the float-accumulating kernels; measured on rms_norm 7x5: 0.025 vs 0.004 off)."""
    _, ref, add, _ = OPS_TABLE[name]
    args = [(a,) if isinstance(a, int) else a for a in args]  # F.layer_norm wants a sequence
    if dtype not in REDUCED:
        ref_args = _clone(args)
        return _outputs(ref(*ref_args)), ref_args
    ref_args = [a.detach().double().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
    call = list(ref_args)
    kwargs = {}
    if "rms" in name:
        kwargs["eps"] = torch.finfo(torch.float32).eps  # F.rms_norm's default for float16/bfloat16
    if add:
        ref_fn = F.layer_norm if name == "add_layer_norm" else F.rms_norm
        s = (call[0] + call[1]).to(dtype).double()
        outs = [ref_fn(s, *call[2:], **kwargs), s]
    else:
        outs = [ref(*call, **kwargs)]
    return [o.to(dtype) for o in outs], ref_args


def _outputs(out):
    return list(out) if isinstance(out, tuple) else [out]


def _tensors(args):
    return [a for a in args if isinstance(a, torch.Tensor)]


@pytest.mark.parametrize("device,dtype", device_dtype_params())
@pytest.mark.parametrize("name", list(OPS_TABLE))
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_forward_backward_match_torch(device, dtype, name, shapes, affine):
    torch.manual_seed(0)
    ours = OPS_TABLE[name][0]
    args = _args(name, *shapes, device, dtype, affine)
    outs = _outputs(ours(*args))
    refs, ref_args = _reference(name, args, dtype)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == r.dtype and o.device == r.device
        torch.testing.assert_close(o, r, **TOL[dtype])
    grads = [torch.randn_like(r) for r in refs]
    torch.autograd.backward(outs, grads)
    torch.autograd.backward(refs, grads)
    for a, r in zip(_tensors(args), _tensors(ref_args)):
        assert a.grad is not None and a.grad.shape == a.shape and a.grad.dtype == a.dtype
        torch.testing.assert_close(a.grad, r.grad.to(a.dtype), **TOL[dtype])


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(OPS_TABLE))
def test_mixed_precision_float32_weight(device, dtype, name):
    """float16/bfloat16 input with float32 weight (and bias): the result has the input's
    dtype, the weight gradient the weight's, as in PyTorch."""
    torch.manual_seed(0)
    ours, ref, _, _ = OPS_TABLE[name]
    args = _args(name, (6, 40), (40,), device, dtype, param_dtype=torch.float32)
    outs = _outputs(ours(*args))
    torch_outs = _outputs(ref(*_clone(args)))  # dtypes as PyTorch's
    refs, ref_args = _reference(name, args, dtype)
    for o, t, r in zip(outs, torch_outs, refs):
        assert o.dtype == t.dtype == dtype
        torch.testing.assert_close(o, r, **TOL[dtype])
    grads = [torch.randn_like(r) for r in refs]
    torch.autograd.backward(outs, grads)
    torch.autograd.backward(refs, grads)
    for a, r in zip(_tensors(args), _tensors(ref_args)):
        assert a.grad.dtype == a.dtype
        torch.testing.assert_close(a.grad, r.grad.to(a.dtype), **TOL[a.dtype if a.dtype in REDUCED else dtype])


@pytest.mark.parametrize("device,dtype", AUTOCAST)
@pytest.mark.parametrize("name", list(OPS_TABLE))
@pytest.mark.parametrize("input_dtype", ["float32", "autocast"])
def test_autocast(device, dtype, name, input_dtype):
    """Under torch.autocast each op gives what its torch counterpart (the composition
    norm(x + r), x + r for the add variants) gives under the same autocast: float32 on CUDA
    (PyTorch's fp32 policy for layer_norm / rms_norm), the input's dtype on CPU (not listed
    there), a float32 weight and bias included; gradients reach the float32 parameters."""
    torch.manual_seed(0)
    ours, ref, _, _ = OPS_TABLE[name]
    xdt = torch.float32 if input_dtype == "float32" else dtype
    args = _args(name, (6, 40), (40,), device, xdt, param_dtype=torch.float32)
    check_autocast(device, dtype, args, ours, ref, TOL[xdt])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(OPS_TABLE))
@pytest.mark.parametrize("input_dtype", ["float32", "autocast"])
def test_autocast_cuda_policy_without_a_gpu(dtype, name, input_dtype):
    """The dtypes under CUDA autocast (float32 for every norm, the add variants' sum in the
    inputs' dtype) against torch's, on fake CUDA tensors: checked on any machine."""
    _, ref, _, _ = OPS_TABLE[name]
    ours = OPS_TABLE[name][0]
    xdt = torch.float32 if input_dtype == "float32" else dtype
    args = _args(name, (6, 40), (40,), "cpu", xdt, param_dtype=torch.float32)
    check_autocast_dtypes_fake_cuda(dtype, args, ours, ref)


def test_rms_norm_weight_of_another_dtype():
    """F.rms_norm accepts any floating weight and returns the input's dtype."""
    x = torch.randn(4, 8)
    w = torch.randn(8, dtype=torch.bfloat16)
    y = torch_ops.rms_norm(x, (8,), w)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.rms_norm(x, (8,), w))


@pytest.mark.parametrize("eps", [None, 1e-6, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rms_norm_eps(eps, dtype):
    """eps=None is what F.rms_norm uses (the opmath type's epsilon; visible on tiny inputs)."""
    x = (torch.randn(3, 16, dtype=torch.float64) * 1e-3).to(dtype)
    torch.testing.assert_close(torch_ops.rms_norm(x, 16, eps=eps), F.rms_norm(x, (16,), eps=eps), **TOL[dtype])


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_float32_against_float64(device):
    """float32 results are as accurate as torch's own (reference in float64); long rows and
    a large offset (the statistics must not cancel)."""
    torch.manual_seed(0)
    for m, n in ((300, 70), (4, 20000)):
        x = torch.randn(m, n, device=device, dtype=torch.float64) + 100.0
        w = torch.randn(n, device=device, dtype=torch.float64)
        b = torch.randn(n, device=device, dtype=torch.float64)
        a32 = [t.float().requires_grad_() for t in (x, w, b)]
        y = torch_ops.layer_norm(a32[0], (n,), a32[1], a32[2])
        ref = F.layer_norm(x, (n,), w, b)
        y_t = F.layer_norm(x.float(), (n,), w.float(), b.float())
        err, err_torch = (y.double() - ref).abs().max(), (y_t.double() - ref).abs().max()
        assert err <= 4 * err_torch + 1e-6, (err, err_torch)
        gy = torch.randn_like(ref)
        y.backward(gy.float())
        torch.testing.assert_close(a32[2].grad.double(), gy.sum(0), rtol=1e-5, atol=1e-4)
        xhat = F.layer_norm(x, (n,))
        torch.testing.assert_close(a32[1].grad.double(), (gy * xhat).sum(0), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", list(OPS_TABLE))
def test_noncontiguous(device, name):
    torch.manual_seed(0)
    ours, ref, add, has_bias = OPS_TABLE[name]
    x = torch.randn(10, 6, device=device, dtype=torch.float64).t().requires_grad_()  # (6, 10), strided
    extra = [torch.randn(10, device=device, dtype=torch.float64).expand(6, 10)] if add else []
    w = torch.randn(20, device=device, dtype=torch.float64)[::2].requires_grad_()
    params = [w] + ([torch.randn(10, device=device, dtype=torch.float64, requires_grad=True)] if has_bias else [])
    args = [x, *extra, (10,), *params]
    outs, refs = _outputs(ours(*args)), _outputs(ref(*args))
    for o, r in zip(outs, refs):
        torch.testing.assert_close(o, r)
        assert o.is_contiguous()
    g_ours = torch.autograd.grad(outs[0].pow(2).sum(), [x, w])
    g_ref = torch.autograd.grad(refs[0].pow(2).sum(), [x, w])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- gradcheck


def _gc_cases():
    out = []
    for name in OPS_TABLE:
        for affine in (True, False):
            for shape, ns in (((3, 5), (5,)), ((2, 2, 3), (2, 3))):
                out.append(pytest.param(name, affine, shape, ns, id=f"{name}-{'affine' if affine else 'plain'}-{shape}"))
    return out


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,affine,shape,ns", _gc_cases())
def test_gradcheck_gradgradcheck(device, name, affine, shape, ns):
    torch.manual_seed(0)
    ours, _, _, _ = OPS_TABLE[name]
    args = _args(name, shape, ns, device, torch.float64, affine)

    def fn(*tensors):
        it = iter(tensors)
        call = [next(it) if isinstance(a, torch.Tensor) else a for a in args]
        return ours(*call)

    tensors = _tensors(args)
    assert gradcheck(fn, tensors)
    assert gradgradcheck(fn, tensors)


def test_double_backward_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    for ours, ref in ((torch_ops.layer_norm, F.layer_norm),):
        gy = torch.randn(4, 6, dtype=torch.float64)
        g1 = torch.autograd.grad(ours(x, (6,), w, b), (x, w), gy, create_graph=True)
        g2 = torch.autograd.grad(ref(x, (6,), w, b), (x, w), gy, create_graph=True)
        h1 = torch.autograd.grad(g1[0].pow(2).sum() + g1[1].sin().sum(), (x, w, b), allow_unused=True)
        h2 = torch.autograd.grad(g2[0].pow(2).sum() + g2[1].sin().sum(), (x, w, b), allow_unused=True)
        for a, r in zip(h1, h2):
            if r is None:
                assert a is None or torch.count_nonzero(a) == 0
            else:
                torch.testing.assert_close(a, r)
    gy = torch.randn(4, 6, dtype=torch.float64)
    g1 = torch.autograd.grad(torch_ops.rms_norm(x, 6, w), (x, w), gy, create_graph=True)
    g2 = torch.autograd.grad(F.rms_norm(x, (6,), w), (x, w), gy, create_graph=True)
    h1 = torch.autograd.grad(g1[0].pow(2).sum() + g1[1].sin().sum(), (x, w))
    h2 = torch.autograd.grad(g2[0].pow(2).sum() + g2[1].sin().sum(), (x, w))
    for a, r in zip(h1, h2):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("name", ["layer_norm", "rms_norm"])
def test_function_classes_gradcheck(name):
    torch.manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    r = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    if name == "layer_norm":
        fns = [
            (lambda x, w, b: AF.LayerNormFunction.apply(x, (5,), w, b, 1e-5), (x, w, b)),
            (lambda x, r, w, b: AF.AddLayerNormFunction.apply(x, r, (5,), w, b, 1e-5), (x, r, w, b)),
        ]
        torch.testing.assert_close(AF.LayerNormFunction.apply(x, 5, w, b), F.layer_norm(x, (5,), w, b))
    else:
        fns = [
            (lambda x, w: AF.RMSNormFunction.apply(x, (5,), w), (x, w)),
            (lambda x, r, w: AF.AddRMSNormFunction.apply(x, r, (5,), w), (x, r, w)),
        ]
        torch.testing.assert_close(AF.RMSNormFunction.apply(x, 5, w), F.rms_norm(x, (5,), w))
    for fn, inputs in fns:
        assert gradcheck(fn, inputs)
        assert gradgradcheck(fn, inputs)


def test_only_one_output_used():
    """add_*: the gradient flows when only the normalized output or only the sum is used."""
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    r = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y, s = torch_ops.add_layer_norm(x, r, 5)
    (gx,) = torch.autograd.grad(s.sum(), x, retain_graph=True)
    torch.testing.assert_close(gx, torch.ones_like(x))
    gx, gr = torch.autograd.grad(y.pow(2).sum(), (x, r))
    ref = torch.autograd.grad(F.layer_norm(x + r, (5,)).pow(2).sum(), x)[0]
    torch.testing.assert_close(gx, ref)
    torch.testing.assert_close(gr, ref)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", list(OPS_TABLE))
@pytest.mark.parametrize("m,n", [(517, 99), (37, 16411)], ids=["short-rows", "long-rows"])
def test_param_grads_bitwise_deterministic(device, name, m, n):
    """Weight/bias gradients are bitwise identical run to run, and for 1 or 2 threads."""
    torch.manual_seed(0)
    ours, _, _, _ = OPS_TABLE[name]
    args = _args(name, (m, n), (n,), device, torch.float32)
    gy = torch.randn(m, n, device=device)
    params = _tensors(args)[-2:] if OPS_TABLE[name][3] else _tensors(args)[-1:]

    def grads():
        out = _outputs(ours(*args))[0]
        return [g.clone() for g in torch.autograd.grad(out, params, gy)]

    threads = torch.get_num_threads()
    try:
        first = grads()
        for n in (1, 2, threads):
            torch.set_num_threads(n)
            for _ in range(2):
                for a, b in zip(first, grads()):
                    assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- CPU variants


# (N = 1 or 2 is left out here: layer_norm's output is then constant (0 or +-1), its true
# input gradient zero, and any float32 implementation returns rounding noise scaled by
# rstd; gradcheck covers small rows in float64.)
@pytest.mark.parametrize("n", [3, 7, 16, 33, 64, 100, 1031, 16411])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kernel_paths_every_isa(n, dtype, cpu_isa):
    """Every instruction-set variant, vector body and tails, against torch."""
    torch.manual_seed(0)
    for name, (ours, _, _, _) in OPS_TABLE.items():
        args = _args(name, (5, n), (n,), "cpu", dtype)
        outs = _outputs(ours(*args))
        refs, ref_args = _reference(name, args, dtype)
        for o, r in zip(outs, refs):
            torch.testing.assert_close(o, r, **TOL[dtype])
        grads = [torch.randn_like(r) for r in refs]
        torch.autograd.backward(outs, grads)
        torch.autograd.backward(refs, grads)
        for a, r in zip(_tensors(args), _tensors(ref_args)):
            torch.testing.assert_close(a.grad, r.grad.to(a.dtype), **TOL[dtype])


@pytest.mark.parametrize("n", [1024, 1025])
def test_large_float32_output_every_isa(n, cpu_isa):
    """float32 outputs of >= 8 MiB are written with non-temporal stores on rows whose start
    is vector-aligned (n = 1025: every other row is not): the values are the same."""
    torch.manual_seed(0)
    x = torch.randn(2048, n) * 3 + 1
    w, b = torch.randn(n), torch.randn(n)
    torch.testing.assert_close(torch_ops.layer_norm(x, (n,), w, b), F.layer_norm(x, (n,), w, b), **TOL[torch.float32])
    torch.testing.assert_close(torch_ops.rms_norm(x, (n,), w), F.rms_norm(x, (n,), w), **TOL[torch.float32])
    y, s = torch_ops.add_layer_norm(x, x.flip(0), (n,), w, b)
    torch.testing.assert_close(s, x + x.flip(0))
    torch.testing.assert_close(y, F.layer_norm(x + x.flip(0), (n,), w, b), **TOL[torch.float32])


# ----------------------------------------------------------------------------- opcheck / compile


def _opcheck_samples(device):
    f64 = dict(device=device, dtype=torch.float64)
    x = torch.randn(2, 3, 4, **f64, requires_grad=True)
    r = torch.randn(2, 3, 4, **f64, requires_grad=True)
    w = torch.randn(4, **f64, requires_grad=True)
    b = torch.randn(4, **f64, requires_grad=True)
    w2 = torch.randn(3, 4, **f64, requires_grad=True)
    _, mean, rstd = OPS.layer_norm(x.detach(), [4], None, None, 1e-5)
    _, rstd_rms = OPS.rms_norm(x.detach(), [4], None, None)
    gy = torch.randn(2, 3, 4, **f64, requires_grad=True)
    xb = x.detach().bfloat16()
    return [
        (OPS.layer_norm.default, (x, [4], w, b, 1e-5)),
        (OPS.layer_norm.default, (x, [3, 4], w2, None, 1e-3)),
        (OPS.layer_norm.default, (x.detach(), [4], None, None, 1e-5)),
        (OPS.layer_norm.default, (xb, [4], w.detach().float(), b.detach().float(), 1e-5)),
        (OPS.rms_norm.default, (x, [4], w, None)),
        (OPS.rms_norm.default, (x, [4], None, 1e-6)),
        (OPS.add_layer_norm.default, (x, r, [4], w, b, 1e-5)),
        (OPS.add_layer_norm.default, (x.detach().transpose(0, 1), r.detach().transpose(0, 1), [4], None, None, 1e-5)),
        (OPS.add_rms_norm.default, (x, r, [4], w, None)),
        (OPS.norm_backward.default, (gy.detach(), x.detach(), mean, rstd, [4], w.detach(), None, 1e-5, [True, True, True])),
        (OPS.norm_backward.default, (gy.detach(), x.detach(), None, rstd_rms, [4], w.detach(), r.detach(), 1e-5, [True, False, False])),
        (OPS.norm_backward.default, (gy, x, mean, rstd, [4], w, None, 1e-5, [True, True, True])),
    ]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)  # raises on any failed check


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("name", list(OPS_TABLE))
def test_compile_forward_backward(device, dynamic, name):
    torch._dynamo.reset()
    ours, _, add, _ = OPS_TABLE[name]

    def fn(*args):
        outs = _outputs(ours(*args))
        return sum(o.tanh().sum() for o in outs)

    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for m in (5, 6, 9):
        args = _args(name, (2, m, 8), (8,), device, torch.float64)
        ref_args = _clone(args)
        out, ref = compiled(*args), fn(*ref_args)
        torch.testing.assert_close(out, ref)
        out.backward()
        ref.backward()
        for a, r in zip(_tensors(args), _tensors(ref_args)):
            torch.testing.assert_close(a.grad, r.grad)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_inductor_modules(device):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch_ops.nn.LayerNorm(8), torch.nn.Linear(8, 8), torch_ops.nn.RMSNorm(8)).to(device)
    x = torch.randn(5, 8, device=device)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# ----------------------------------------------------------------------------- errors


def _error_cases():
    x = torch.randn(4, 3)
    w = torch.randn(3)
    return [
        (torch_ops.layer_norm, (x, (4,)), r"torch_ops\.layer_norm: expected input with shape \[\*, 4\]"),
        (torch_ops.layer_norm, (x, (2, 4, 3)), r"torch_ops\.layer_norm: expected input with shape"),
        (torch_ops.layer_norm, (x, ()), r"torch_ops\.layer_norm: expected normalized_shape to be at least 1-dimensional"),
        (torch_ops.layer_norm, (x, (3,), torch.randn(4)), r"torch_ops\.layer_norm: expected weight to have the shape normalized_shape=\[3\]"),
        (torch_ops.layer_norm, (x, (3,), w, torch.randn(2)), r"torch_ops\.layer_norm: expected bias to have the shape"),
        (torch_ops.layer_norm, (x, (3,), w.double()), r"torch_ops\.layer_norm: expected weight to have the dtype of input \(Float\), got Double"),
        (torch_ops.layer_norm, (x.bfloat16(), (3,), w, w.bfloat16()), r"torch_ops\.layer_norm: expected bias to have the dtype"),
        (torch_ops.layer_norm, (x.long(), (3,)), r"torch_ops\.layer_norm: expected input to have a floating-point dtype"),
        (torch_ops.layer_norm, (x, (3,), w.to("meta")), r"torch_ops\.layer_norm: expected weight to be on the device of input"),
        (torch_ops.rms_norm, (x, (5,)), r"torch_ops\.rms_norm: expected input with shape \[\*, 5\]"),
        (torch_ops.add_layer_norm, (x, torch.randn(4, 2), (3,)), r"torch_ops\.add_layer_norm: expected residual to have the shape of input"),
        (torch_ops.add_rms_norm, (x, x.double(), (3,)), r"torch_ops\.add_rms_norm: expected residual to have the dtype of input"),
    ]


@pytest.mark.parametrize("case", range(len(_error_cases())))
def test_errors_are_clear(case):
    fn, args, msg = _error_cases()[case]
    with pytest.raises(RuntimeError, match=msg):
        fn(*args)


def test_errors_match_torch_exception_types():
    x = torch.randn(4, 3)
    for ours, ref in ((torch_ops.layer_norm, F.layer_norm), (torch_ops.rms_norm, F.rms_norm)):
        for args in ((x, (4,)), (x, (3,), torch.randn(4))):
            with pytest.raises(RuntimeError):
                ref(*args)
            with pytest.raises(RuntimeError):
                ours(*args)
    with pytest.raises(TypeError):
        torch_ops.layer_norm([1.0, 2.0], (2,))
    with pytest.raises(TypeError):
        torch_ops.layer_norm(x, "3")
    with pytest.raises(TypeError):
        torch_ops.rms_norm(x, (3,), 1.0)


def test_forward_mode_ad_is_refused_loudly():
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(lambda a: torch_ops.layer_norm(a, (4,)), (x,), (torch.ones_like(x),))


def test_torch_function_override_is_honoured():
    seen = []

    class Traced(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.randn(4, 3).as_subclass(Traced)
    assert torch_ops.layer_norm(x, (3,)).shape == (4, 3)
    assert torch_ops.layer_norm in seen


# ----------------------------------------------------------------------------- modules


@pytest.mark.parametrize("kwargs", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-3}])
def test_layer_norm_module_is_a_drop_in(kwargs):
    torch.manual_seed(0)
    ref = torch.nn.LayerNorm((3, 8), **kwargs)
    for p in ref.parameters():
        torch.nn.init.normal_(p)
    ours = torch_ops.nn.LayerNorm((3, 8), **kwargs)
    assert isinstance(ours, torch.nn.LayerNorm)
    ours.load_state_dict(ref.state_dict())
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert repr(ours).replace("torch_ops.", "") == repr(ref)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(ours(x), ref(x))
    ref.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("kwargs", [{}, {"elementwise_affine": False}, {"eps": 1e-3}])
def test_rms_norm_module_is_a_drop_in(kwargs):
    torch.manual_seed(0)
    ref = torch.nn.RMSNorm(8, **kwargs)
    for p in ref.parameters():
        torch.nn.init.normal_(p)
    ours = torch_ops.nn.RMSNorm(8, **kwargs)
    assert isinstance(ours, torch.nn.RMSNorm)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(ours(x), ref(x))


def test_module_dtype_device_args():
    m = torch_ops.nn.LayerNorm(4, dtype=torch.float64, device="cpu")
    assert m.weight.dtype == torch.float64
    m = torch_ops.nn.RMSNorm(4, dtype=torch.bfloat16)
    assert m.weight.dtype == torch.bfloat16


def test_convert():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.RMSNorm(8))
    x = torch.randn(3, 4)
    ref = model(x)
    _, replaced = torch_ops.nn.convert(model, report=True)
    assert type(model[1]) is torch_ops.nn.LayerNorm and type(model[2]) is torch_ops.nn.RMSNorm
    assert ("1", "LayerNorm") in replaced and ("2", "RMSNorm") in replaced
    torch.testing.assert_close(model(x), ref)
