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


# Each spec draws (inputs, ours, reference): the callables take the inputs positionally.


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


SPECS = {
    "linear": _linear,
    "fused_linear": _fused,
    **{n: _unary(n) for n in ("relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh")},
    **{n: _gated(n) for n in ("glu", "swiglu", "geglu")},
}


def _close(got, exp, dtype, what, truth=None):
    """float64/float32: against PyTorch's result. bfloat16/float16, where PyTorch's own
    result may round more often than ours (e.g. a GEMM and a separate bias add): each
    element at least as close to the float64 computation on the same inputs as PyTorch's,
    within a factor 2 plus the dtype's tolerance."""
    assert got.shape == exp.shape and got.dtype == exp.dtype, (what, got.shape, exp.shape, got.dtype, exp.dtype)
    if truth is None or dtype in (torch.float64, torch.float32):
        torch.testing.assert_close(got, exp, equal_nan=True, msg=lambda m: f"{what}: {m}", **TOL[dtype])
        return
    tol = TOL[dtype]
    ours_err = (got.double() - truth).abs()
    torch_err = (exp.double() - truth).abs()
    bound = 2 * torch_err + tol["atol"] + tol["rtol"] * truth.abs()
    bad = ~(ours_err <= bound) & ~(got.isnan() & exp.isnan())
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements further from the float64 result than PyTorch's {dtype} result allows; "
        f"worst: ours {got[bad][0].item()}, torch {exp[bad][0].item()}, float64 {truth[bad][0].item()}"
    )


@pytest.mark.parametrize("name", list(SPECS))
@FUZZ
@given(data=st.data())
def test_fuzz_against_torch(name, data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    inputs, ours, ref = SPECS[name](data.draw, dtype)
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]  # clone: a dense copy, same values
    f64_inputs = [t.detach().double().requires_grad_() for t in inputs]  # the same values, in float64
    out, exp, truth = ours(*inputs), ref(*ref_inputs), ref(*f64_inputs)
    _close(out, exp, dtype, "forward", truth.detach())
    g = torch.randn(exp.shape, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(out, inputs, g, allow_unused=True)
    ref_grads = torch.autograd.grad(exp, ref_inputs, g, allow_unused=True)
    truth_grads = torch.autograd.grad(truth, f64_inputs, g.double(), allow_unused=True)
    for i, (a, b, t) in enumerate(zip(grads, ref_grads, truth_grads)):
        if b is None:
            assert a is None or not a.any(), f"gradient {i}"
        else:
            assert a is not None, f"gradient {i} missing"
            _close(a, b, dtype, f"gradient {i}", t)
