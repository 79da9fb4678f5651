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
