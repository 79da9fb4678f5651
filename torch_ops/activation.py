"""activations: relu, leaky_relu, gelu, silu, sigmoid, tanh, glu and the gated units
swiglu and geglu: functional ops, autograd Functions, fake kernels and benchmark cases.

Kernels: csrc/activation.cpp (host code: checks, shapes), csrc/cpu/kernels/activation.h
and cuda/activation.cu (the kernels), the math once in
csrc/include/torch_ops/activation_math.h; autograd in csrc/autograd/activation.cpp.
Dispatcher ops (schemas in csrc/ops.cpp), per activation ``<op>``:

* ``<op>(input, ...)``, and ``<op>_(self, ...)`` in place for relu, leaky_relu and silu
* ``<op>_backward(grad_output, s, ...)``: s is the input, or the result for relu, sigmoid, tanh
* ``<op>_double_backward(grad_grad_input, grad_output, s, ...)`` for the smooth activations
* gated units (``a, b = input.chunk(2, dim)``): ``glu`` = a * sigmoid(b), ``swiglu`` =
  silu(a) * b, ``geglu`` = gelu(a) * b; ``<g>_backward(grad_output, input, dim)`` returns
  the gradient of the whole input, ``<g>_double_backward`` (d grad_output, d input).

Outputs are contiguous (a non-contiguous input is read through one contiguous copy).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from . import _C
from torch.overrides import handle_torch_function

from ._dispatch import _has_torch_function, _is_compiling

_ops = torch.ops.torch_ops


def _check_tensor(input, op: str) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"torch_ops.{op}: expected input to be a Tensor, got {type(input).__name__}")


def _check_inplace_flag(inplace, op: str) -> None:
    if not isinstance(inplace, bool):
        raise TypeError(f"torch_ops.{op}: expected inplace to be a bool, got {type(inplace).__name__}")


def _check_approximate(approximate, op: str) -> None:
    if not isinstance(approximate, str):
        raise TypeError(f"torch_ops.{op}: expected approximate to be a str, got {type(approximate).__name__}")


def _check_dim(dim, op: str) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"torch_ops.{op}: expected dim to be an int, got {type(dim).__name__}")


def _promote(input: Tensor) -> Tensor:
    """torch.sigmoid / torch.tanh compute integer and bool inputs in the default float dtype."""
    if input.is_floating_point() or input.is_complex():
        return input
    return input.to(torch.get_default_dtype())


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``torch.nn.functional.relu``: max(input, 0); ``inplace=True`` modifies and returns input."""
    if _has_torch_function((input,)):
        return handle_torch_function(relu, (input,), input, inplace=inplace)
    _check_tensor(input, "relu")
    _check_inplace_flag(inplace, "relu")
    if inplace:
        return _ops.relu_.default(input) if _is_compiling() else _C.relu_(input)
    return _ops.relu.default(input) if _is_compiling() else _C.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``torch.nn.functional.leaky_relu``: input where > 0, else negative_slope * input."""
    if _has_torch_function((input,)):
        return handle_torch_function(leaky_relu, (input,), input, negative_slope=negative_slope, inplace=inplace)
    _check_tensor(input, "leaky_relu")
    _check_inplace_flag(inplace, "leaky_relu")
    if not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"torch_ops.leaky_relu: expected negative_slope to be a number, got {type(negative_slope).__name__}")
    slope = float(negative_slope)
    if inplace:
        return _ops.leaky_relu_.default(input, slope) if _is_compiling() else _C.leaky_relu_(input, slope)
    return _ops.leaky_relu.default(input, slope) if _is_compiling() else _C.leaky_relu(input, slope)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``torch.nn.functional.gelu``: input * Phi(input), or its tanh approximation."""
    if _has_torch_function((input,)):
        return handle_torch_function(gelu, (input,), input, approximate=approximate)
    _check_tensor(input, "gelu")
    _check_approximate(approximate, "gelu")
    return _ops.gelu.default(input, approximate) if _is_compiling() else _C.gelu(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``torch.nn.functional.silu``: input * sigmoid(input)."""
    if _has_torch_function((input,)):
        return handle_torch_function(silu, (input,), input, inplace=inplace)
    _check_tensor(input, "silu")
    _check_inplace_flag(inplace, "silu")
    if inplace:
        return _ops.silu_.default(input) if _is_compiling() else _C.silu_(input)
    return _ops.silu.default(input) if _is_compiling() else _C.silu(input)


def sigmoid(input: Tensor) -> Tensor:
    """``torch.sigmoid`` / ``torch.nn.functional.sigmoid``: 1 / (1 + exp(-input))."""
    if _has_torch_function((input,)):
        return handle_torch_function(sigmoid, (input,), input)
    _check_tensor(input, "sigmoid")
    input = _promote(input)
    return _ops.sigmoid.default(input) if _is_compiling() else _C.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    """``torch.tanh`` / ``torch.nn.functional.tanh``."""
    if _has_torch_function((input,)):
        return handle_torch_function(tanh, (input,), input)
    _check_tensor(input, "tanh")
    input = _promote(input)
    return _ops.tanh.default(input) if _is_compiling() else _C.tanh(input)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """``torch.nn.functional.glu``: a * sigmoid(b), where a, b = input.chunk(2, dim)."""
    if _has_torch_function((input,)):
        return handle_torch_function(glu, (input,), input, dim=dim)
    _check_tensor(input, "glu")
    _check_dim(dim, "glu")
    if input.dim() == 0:
        raise RuntimeError("torch_ops.glu: glu does not support scalars because halving size must be even")
    return _ops.glu.default(input, dim) if _is_compiling() else _C.glu(input, dim)


def swiglu(input: Tensor, dim: int = -1) -> Tensor:
    """SwiGLU (LLaMA-style MLPs): silu(a) * b, where a, b = input.chunk(2, dim).

    One pass over the input forward and one backward (the gradient of both halves), instead
    of the chunk, silu, multiply and concatenation of the eager composition.
    """
    if _has_torch_function((input,)):
        return handle_torch_function(swiglu, (input,), input, dim=dim)
    _check_tensor(input, "swiglu")
    _check_dim(dim, "swiglu")
    return _ops.swiglu.default(input, dim) if _is_compiling() else _C.swiglu(input, dim)


def geglu(input: Tensor, dim: int = -1, approximate: str = "none") -> Tensor:
    """GEGLU (T5-style MLPs): gelu(a, approximate) * b, where a, b = input.chunk(2, dim)."""
    if _has_torch_function((input,)):
        return handle_torch_function(geglu, (input,), input, dim=dim, approximate=approximate)
    _check_tensor(input, "geglu")
    _check_dim(dim, "geglu")
    _check_approximate(approximate, "geglu")
    if _is_compiling():
        return _ops.geglu.default(input, dim, approximate)
    return _C.geglu(input, dim, approximate)


# ---------------------------------------------------------------------------------------
# autograd Functions. Each backward is the dispatcher's <op>_backward, which has autograd
# of its own (csrc/autograd/activation.cpp), so double backward works through them too.


class ReLUFunction(torch.autograd.Function):
    """relu as a ``torch.autograd.Function``: ``ReLUFunction.apply(x)``. Saves the result."""

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return _ops.relu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return _ops.relu_backward(grad_output, result)


class LeakyReLUFunction(torch.autograd.Function):
    """leaky_relu: ``LeakyReLUFunction.apply(x, negative_slope=0.01)``. Saves the input."""

    @staticmethod
    def forward(input: Tensor, negative_slope: float = 0.01) -> Tensor:
        return _ops.leaky_relu(input, float(negative_slope))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.negative_slope = float(inputs[1]) if len(inputs) > 1 else 0.01

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return _ops.leaky_relu_backward(grad_output, input, ctx.negative_slope), None


class GELUFunction(torch.autograd.Function):
    """gelu: ``GELUFunction.apply(x, approximate='none')``. Saves the input."""

    @staticmethod
    def forward(input: Tensor, approximate: str = "none") -> Tensor:
        return _ops.gelu(input, approximate)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.approximate = inputs[1] if len(inputs) > 1 else "none"

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return _ops.gelu_backward(grad_output, input, ctx.approximate), None


class SiLUFunction(torch.autograd.Function):
    """silu: ``SiLUFunction.apply(x)``. Saves the input."""

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return _ops.silu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return _ops.silu_backward(grad_output, input)


class SigmoidFunction(torch.autograd.Function):
    """sigmoid: ``SigmoidFunction.apply(x)``. Saves the result."""

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return _ops.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return _ops.sigmoid_backward(grad_output, result)


class TanhFunction(torch.autograd.Function):
    """tanh: ``TanhFunction.apply(x)``. Saves the result."""

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return _ops.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (result,) = ctx.saved_tensors
        return _ops.tanh_backward(grad_output, result)


class _GatedFunction(torch.autograd.Function):
    """A gated unit ``apply(x, dim=-1, [approximate])``; saves the input only."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.args = tuple(inputs[1:])


class GLUFunction(_GatedFunction):
    """glu: ``GLUFunction.apply(x, dim=-1)`` = a * sigmoid(b)."""

    @staticmethod
    def forward(input: Tensor, dim: int = -1) -> Tensor:
        return _ops.glu(input, dim)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return (_ops.glu_backward(grad_output, input, *ctx.args),) + (None,) * len(ctx.args)


class SwiGLUFunction(_GatedFunction):
    """swiglu: ``SwiGLUFunction.apply(x, dim=-1)`` = silu(a) * b."""

    @staticmethod
    def forward(input: Tensor, dim: int = -1) -> Tensor:
        return _ops.swiglu(input, dim)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return (_ops.swiglu_backward(grad_output, input, *ctx.args),) + (None,) * len(ctx.args)


class GEGLUFunction(_GatedFunction):
    """geglu: ``GEGLUFunction.apply(x, dim=-1, approximate='none')`` = gelu(a) * b."""

    @staticmethod
    def forward(input: Tensor, dim: int = -1, approximate: str = "none") -> Tensor:
        return _ops.geglu(input, dim, approximate)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return (_ops.geglu_backward(grad_output, input, *ctx.args),) + (None,) * len(ctx.args)


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes, dtypes and the C++ kernels' checks. Outputs are contiguous,
# as the real kernels' are.


def _check_floating(t, name, op):
    torch._check(t.is_floating_point(), lambda: f"torch_ops.{op}: expected {name} to have a floating-point dtype (float64, float32, float16 or bfloat16), got {t.dtype}")


def _check_same(args, op):
    (first_name, first), *rest = args
    for name, t in args:
        _check_floating(t, name, op)
    for name, t in rest:
        torch._check(t.dtype == first.dtype, lambda: f"torch_ops.{op}: expected {name} to have the dtype of {first_name} ({first.dtype}), got {t.dtype}")
        torch._check(t.device == first.device, lambda: f"torch_ops.{op}: expected {name} to be on the device of {first_name} ({first.device}), got {t.device}")
        torch._check(t.shape == first.shape, lambda: f"torch_ops.{op}: expected {name} to have the shape of {first_name} {tuple(first.shape)}, got {tuple(t.shape)}")


def _check_approximate_value(approximate, op):
    torch._check(approximate in ("none", "tanh"), lambda: f"torch_ops.{op}: expected approximate to be 'none' or 'tanh', got '{approximate}'")


def _pointwise_fake(op, names, approximate=None):
    def fake(*args):
        tensors = list(zip(names, args[: len(names)]))
        _check_same(tensors, op)
        if approximate is not None:
            _check_approximate_value(args[len(names)] if len(args) > len(names) else "none", op)
        return args[0].new_empty(args[0].shape)

    return fake


def _inplace_fake(op):
    def fake(self, *params):
        _check_floating(self, "self", op)
        return self

    return fake


def _half_shape(input, dim, op):
    torch._check(input.dim() >= 1, lambda: f"torch_ops.{op}: expected input to have at least 1 dimension (it is cut in two along dim), got a 0-D tensor")
    _check_floating(input, "input", op)
    d = dim + input.dim() if dim < 0 else dim
    torch._check(0 <= d < input.dim(), lambda: f"Dimension out of range (expected to be in range of [{-input.dim()}, {input.dim() - 1}], but got {dim})")
    torch._check(input.shape[d] % 2 == 0, lambda: f"torch_ops.{op}: expected input.size({dim}) to be even (the input is cut in two halves along dim), got {input.shape[d]}")
    shape = list(input.shape)
    shape[d] = shape[d] // 2
    return shape


def _gated_fakes(name, has_approximate):
    def fwd(input, dim=-1, approximate="none"):
        if has_approximate:
            _check_approximate_value(approximate, name)
        return input.new_empty(_half_shape(input, dim, name))

    def bwd(grad_output, input, dim=-1, approximate="none"):
        op = name + "_backward"
        shape = _half_shape(input, dim, op)
        _check_like(input, grad_output, "grad_output", op)
        torch._check(list(grad_output.shape) == shape, lambda: f"torch_ops.{op}: expected grad_output to have the shape of the output {tuple(shape)}, got {tuple(grad_output.shape)}")
        if has_approximate:
            _check_approximate_value(approximate, op)
        return input.new_empty(input.shape)

    def dbl(grad_grad_input, grad_output, input, dim=-1, approximate="none"):
        op = name + "_double_backward"
        shape = _half_shape(input, dim, op)
        _check_like(input, grad_output, "grad_output", op)
        _check_like(input, grad_grad_input, "grad_grad_input", op)
        torch._check(list(grad_output.shape) == shape, lambda: f"torch_ops.{op}: expected grad_output to have the shape of the output {tuple(shape)}, got {tuple(grad_output.shape)}")
        torch._check(grad_grad_input.shape == input.shape, lambda: f"torch_ops.{op}: expected grad_grad_input to have the shape of input {tuple(input.shape)}, got {tuple(grad_grad_input.shape)}")
        if has_approximate:
            _check_approximate_value(approximate, op)
        return input.new_empty(shape), input.new_empty(input.shape)

    return fwd, bwd, dbl


def _check_like(input, t, name, op):
    _check_floating(t, name, op)
    torch._check(t.dtype == input.dtype, lambda: f"torch_ops.{op}: expected {name} to have the dtype of input ({input.dtype}), got {t.dtype}")
    torch._check(t.device == input.device, lambda: f"torch_ops.{op}: expected {name} to be on the device of input ({input.device}), got {t.device}")


def _register_fakes():
    unary = {
        "relu": ("result", False, False),
        "leaky_relu": ("input", False, False),
        "gelu": ("input", True, True),
        "silu": ("input", False, True),
        "sigmoid": ("result", False, True),
        "tanh": ("result", False, True),
    }
    for op, (saved, approximate, smooth) in unary.items():
        appr = True if approximate else None
        torch.library.register_fake(f"torch_ops::{op}", _pointwise_fake(op, ["input"], appr))
        torch.library.register_fake(f"torch_ops::{op}_backward", _pointwise_fake(op + "_backward", ["grad_output", saved], appr))
        if smooth:
            torch.library.register_fake(
                f"torch_ops::{op}_double_backward",
                _pointwise_fake(op + "_double_backward", ["grad_grad_input", "grad_output", saved], appr),
            )
    for op in ("relu_", "leaky_relu_", "silu_"):
        torch.library.register_fake(f"torch_ops::{op}", _inplace_fake(op))
    for name in ("glu", "swiglu", "geglu"):
        fwd, bwd, dbl = _gated_fakes(name, name == "geglu")
        torch.library.register_fake(f"torch_ops::{name}", fwd)
        torch.library.register_fake(f"torch_ops::{name}_backward", bwd)
        torch.library.register_fake(f"torch_ops::{name}_double_backward", dbl)


_register_fakes()


# ---------------------------------------------------------------------------------------
# Benchmarks


def _eager_swiglu(x):
    a, b = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(a) * b


def _eager_geglu(x):
    a, b = x.chunk(2, dim=-1)
    return torch.nn.functional.gelu(a) * b


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench --ops activation``).

    Every op on a small (32x64, overhead-bound) and a large (4096x4096 = 16M elements)
    input; the reference is torch.nn.functional's op, and for swiglu / geglu the eager
    composition (chunk, activation, multiply), also timed under torch.compile.
    """
    import torch.nn.functional as F

    from .bench import Case

    def inputs(m, k):
        def make(device, dtype):
            return (torch.randn(m, k, device=device, dtype=dtype, requires_grad=True),)

        return make

    ops = [
        ("relu", relu, F.relu, False),
        ("leaky_relu", leaky_relu, F.leaky_relu, False),
        ("gelu", gelu, F.gelu, False),
        ("gelu_tanh", lambda x: gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh"), False),
        ("silu", silu, F.silu, False),
        ("sigmoid", sigmoid, torch.sigmoid, False),
        ("tanh", tanh, torch.tanh, False),
        ("glu", glu, F.glu, False),
        ("swiglu", swiglu, _eager_swiglu, True),
        ("geglu", geglu, _eager_geglu, True),
    ]
    cases = []
    for name, ours, eager, fused in ops:
        for size, (m, k) in (("small", (32, 64)), ("large", (4096, 4096))):
            cases.append(Case(name, size, f"x {m}x{k}", inputs(m, k), ours=ours, eager=eager, compile=fused))
    return cases
