import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALL_DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def dtypes_for(device: str):
    """The dtypes each op must support on a device (DESIGN.md)."""
    if device == "cuda":
        return [torch.float64, torch.float32, torch.float16, torch.bfloat16]
    return [torch.float64, torch.float32, torch.bfloat16, torch.float16]


# Tolerances against PyTorch's own result in the same dtype (same BLAS, so close).
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1.3e-6, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}


def device_dtype_params():
    out = []
    for dev in ALL_DEVICES:
        name = dev if isinstance(dev, str) else dev.values[0]
        marks = () if isinstance(dev, str) else dev.marks
        for dt in dtypes_for(name):
            out.append(pytest.param(name, dt, marks=marks, id=f"{name}-{str(dt).split('.')[-1]}"))
    return out


def cpu_isas():
    """The CPU kernel variants this machine can run (torch_ops/cpu_isa.h)."""
    import torch_ops

    order = ["default", "avx2", "avx512"]
    hw = torch_ops.build_info()["cpu_isa_hardware"]
    return order[: order.index(hw) + 1]


@pytest.fixture(params=cpu_isas())
def cpu_isa(request):
    """Run a test once per CPU kernel variant, then restore the one in use."""
    import torch_ops

    before = torch_ops.build_info()["cpu_isa"]
    assert torch_ops._C._set_cpu_isa(request.param) == request.param
    yield request.param
    torch_ops._C._set_cpu_isa(before)


# torch.autocast on each device with each lower-precision dtype it takes.
AUTOCAST = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bfloat16"),
    pytest.param("cpu", torch.float16, id="cpu-float16"),
    *[
        pytest.param("cuda", dt, marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"), id=f"cuda-{str(dt).split('.')[-1]}")
        for dt in (torch.float16, torch.bfloat16)
    ],
]


def check_autocast(device, dtype, args, ours, ref, tol):
    """ours(*args) and ref(*args) (torch) under the same torch.autocast(device, dtype): every
    output of the same dtype as torch's and close to it; then a backward outside autocast: every
    floating tensor argument that requires grad gets a gradient of its own dtype, close to
    torch's. Non-tensor arguments are passed as they are."""

    def clone(a):
        return a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a

    ref_args = [clone(a) for a in args]
    with torch.autocast(device, dtype=dtype):
        out, exp = ours(*args), ref(*ref_args)
    out = out if isinstance(out, tuple) else (out,)
    exp = exp if isinstance(exp, tuple) else (exp,)
    assert len(out) == len(exp)
    for i, (a, e) in enumerate(zip(out, exp)):
        assert a.dtype == e.dtype, f"output {i}: {a.dtype}, torch's {e.dtype}"
        torch.testing.assert_close(a, e, msg=lambda m: f"output {i}: {m}", **tol)
    g = torch.Generator().manual_seed(0)
    cots = [torch.randn(e.shape, generator=g).to(device) for e in exp]
    leaves = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    got = torch.autograd.grad(out, [args[i] for i in leaves], [c.to(a.dtype) for c, a in zip(cots, out)])
    want = torch.autograd.grad(exp, [ref_args[i] for i in leaves], [c.to(e.dtype) for c, e in zip(cots, exp)])
    for i, a, e in zip(leaves, got, want):
        assert a.dtype == args[i].dtype == e.dtype, f"gradient of argument {i}: {a.dtype}, torch's {e.dtype}"
        torch.testing.assert_close(a, e, msg=lambda m: f"gradient of argument {i}: {m}", **tol)


def check_autocast_dtypes_fake_cuda(dtype, args, ours, ref):
    """The CUDA autocast policy without a GPU: ours and torch's counterpart on fake CUDA
    tensors (FakeTensorMode: the Autocast and Autograd kernels run, then the fake kernels)
    under CUDA autocast in `dtype` give outputs of the same dtypes and shapes. (Forward only:
    the autograd engine needs a CUDA device for a CUDA backward.)"""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def fake(a):
        if not isinstance(a, torch.Tensor):
            return a
        t = torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="cuda")
        return t.requires_grad_(a.requires_grad)

    was = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    with FakeTensorMode():
        try:
            torch.set_autocast_enabled("cuda", True)
            torch.set_autocast_dtype("cuda", dtype)
            outs = []
            for fn in (ours, ref):
                out = fn(*[fake(a) for a in args])
                outs.append(out if isinstance(out, tuple) else (out,))
        finally:
            torch.set_autocast_enabled("cuda", was[0])
            torch.set_autocast_dtype("cuda", was[1])
            torch.clear_autocast_cache()
    got, want = ([(o.dtype, o.device.type, tuple(o.shape)) for o in out] for out in outs)
    assert got == want and all(d == "cuda" for _, d, _ in got), (got, want)
