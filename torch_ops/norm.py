"""normalization: layer_norm, rms_norm and the residual variants add_layer_norm /
add_rms_norm: functional ops, autograd Functions, fake kernels and benchmark cases.

Kernels: csrc/norm.cpp (host code: checks, shapes), csrc/cpu/kernels/norm.h and
cuda/norm.cu (the kernels), the formulas once in csrc/include/torch_ops/norm_math.h;
autograd in csrc/autograd/norm.cpp. Dispatcher ops (schemas in csrc/ops.cpp):

* ``layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5)`` -> (out, mean, rstd)
* ``rms_norm(input, normalized_shape, weight=None, eps=None)`` -> (out, rstd); eps=None is the
  epsilon of the opmath type, as in ATen
* ``add_layer_norm(input, residual, normalized_shape, weight, bias, eps)`` -> (out, input + residual, mean, rstd)
* ``add_rms_norm(input, residual, normalized_shape, weight, eps)`` -> (out, input + residual, rstd)
* ``norm_backward(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps,
  output_mask)`` -> (grad_input, grad_weight, grad_bias): the fused backward kernels
  (``mean=None``: rms). Its own backward (double backward) differentiates the same formula
  written as ATen arithmetic.

mean and rstd have the input's leading shape, in float32 for float16/bfloat16 inputs.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.overrides import handle_torch_function

from . import _C
from ._dispatch import _has_torch_function, _is_compiling

_ops = torch.ops.torch_ops
_REDUCED = (torch.float16, torch.bfloat16)

_Shape = Union[int, Sequence[int], torch.Size]


def _normalized_shape(normalized_shape, op: str) -> list:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        return [int(normalized_shape)]
    if isinstance(normalized_shape, (tuple, list, torch.Size)) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in normalized_shape
    ):
        return [int(d) for d in normalized_shape]
    raise TypeError(f"torch_ops.{op}: expected normalized_shape to be an int or a sequence of ints, got {normalized_shape!r}")


def _check_tensor(t, name: str, op: str, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"torch_ops.{op}: expected {name} to be a Tensor{' or None' if optional else ''}, got {type(t).__name__}")


def _check_eps(eps, op: str, optional: bool = False):
    if eps is None and optional:
        return None
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool):
        raise TypeError(f"torch_ops.{op}: expected eps to be a float{' or None' if optional else ''}, got {type(eps).__name__}")
    return float(eps)


def _rms_weight(input: Tensor, weight: Optional[Tensor]) -> Optional[Tensor]:
    """F.rms_norm takes a weight of any floating dtype and returns the input's dtype; the
    kernels take the input's dtype or float32 (for float16/bfloat16 inputs): other weights
    are cast (differentiably), to float32 for float16/bfloat16 inputs, else to the input's."""
    if weight is None or not isinstance(input, Tensor) or not input.is_floating_point():
        return weight
    if weight.dtype == input.dtype or (input.dtype in _REDUCED and weight.dtype == torch.float32):
        return weight
    if not weight.is_floating_point():
        return weight  # the op refuses it
    return weight.to(torch.float32 if input.dtype in _REDUCED else input.dtype)


def layer_norm(
    input: Tensor, normalized_shape: _Shape, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, eps: float = 1e-5
) -> Tensor:
    """``torch.nn.functional.layer_norm`` with torch_ops kernels: (x - mean) / sqrt(var + eps) * weight + bias
    over the trailing ``normalized_shape`` dimensions. Differentiable to any order."""
    if not _is_compiling() and _has_torch_function((input, weight, bias)):
        return handle_torch_function(layer_norm, (input, weight, bias), input, normalized_shape, weight, bias, eps)
    _check_tensor(input, "input", "layer_norm")
    _check_tensor(weight, "weight", "layer_norm", optional=True)
    _check_tensor(bias, "bias", "layer_norm", optional=True)
    ns = _normalized_shape(normalized_shape, "layer_norm")
    eps = _check_eps(eps, "layer_norm")
    if _is_compiling():
        return _ops.layer_norm.default(input, ns, weight, bias, eps)[0]
    return _C.layer_norm(input, ns, weight, bias, eps)


def rms_norm(input: Tensor, normalized_shape: _Shape, weight: Optional[Tensor] = None, eps: Optional[float] = None) -> Tensor:
    """``torch.nn.functional.rms_norm``: x / sqrt(mean(x^2) + eps) * weight over the trailing
    ``normalized_shape`` dimensions; ``eps=None`` is what F.rms_norm uses: the epsilon of the
    computation type (``torch.finfo(torch.float32).eps`` for float32, float16 and bfloat16
    inputs, float64's for float64)."""
    if not _is_compiling() and _has_torch_function((input, weight)):
        return handle_torch_function(rms_norm, (input, weight), input, normalized_shape, weight, eps)
    _check_tensor(input, "input", "rms_norm")
    _check_tensor(weight, "weight", "rms_norm", optional=True)
    ns = _normalized_shape(normalized_shape, "rms_norm")
    eps = _check_eps(eps, "rms_norm", optional=True)
    weight = _rms_weight(input, weight)
    if _is_compiling():
        return _ops.rms_norm.default(input, ns, weight, eps)[0]
    return _C.rms_norm(input, ns, weight, eps)


def add_layer_norm(
    input: Tensor,
    residual: Tensor,
    normalized_shape: _Shape,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor]:
    """Pre-norm residual step: ``s = input + residual``; returns ``(layer_norm(s, ...), s)``
    from one pass that reads both inputs once. Differentiable in both outputs."""
    if not _is_compiling() and _has_torch_function((input, residual, weight, bias)):
        return handle_torch_function(
            add_layer_norm, (input, residual, weight, bias), input, residual, normalized_shape, weight, bias, eps
        )
    _check_tensor(input, "input", "add_layer_norm")
    _check_tensor(residual, "residual", "add_layer_norm")
    _check_tensor(weight, "weight", "add_layer_norm", optional=True)
    _check_tensor(bias, "bias", "add_layer_norm", optional=True)
    ns = _normalized_shape(normalized_shape, "add_layer_norm")
    eps = _check_eps(eps, "add_layer_norm")
    if _is_compiling():
        out = _ops.add_layer_norm.default(input, residual, ns, weight, bias, eps)
        return out[0], out[1]
    return _C.add_layer_norm(input, residual, ns, weight, bias, eps)


def add_rms_norm(
    input: Tensor, residual: Tensor, normalized_shape: _Shape, weight: Optional[Tensor] = None, eps: Optional[float] = None
) -> tuple[Tensor, Tensor]:
    """``s = input + residual``; returns ``(rms_norm(s, ...), s)`` from one pass."""
    if not _is_compiling() and _has_torch_function((input, residual, weight)):
        return handle_torch_function(add_rms_norm, (input, residual, weight), input, residual, normalized_shape, weight, eps)
    _check_tensor(input, "input", "add_rms_norm")
    _check_tensor(residual, "residual", "add_rms_norm")
    _check_tensor(weight, "weight", "add_rms_norm", optional=True)
    ns = _normalized_shape(normalized_shape, "add_rms_norm")
    eps = _check_eps(eps, "add_rms_norm", optional=True)
    weight = _rms_weight(input, weight)
    if _is_compiling():
        out = _ops.add_rms_norm.default(input, residual, ns, weight, eps)
        return out[0], out[1]
    return _C.add_rms_norm(input, residual, ns, weight, eps)


# ---------------------------------------------------------------------------------------
# autograd Functions. Their backward is the dispatcher's norm_backward, which has autograd
# of its own (csrc/autograd/norm.cpp), so double backward works through them too.


class _NormFunction(torch.autograd.Function):
    @staticmethod
    def _backward(ctx, grad_output, grad_sum=None):
        x, weight, mean, rstd = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0] or (ctx.add and ctx.needs_input_grad[1])
        need_w = weight is not None and ctx.needs_input_grad[ctx.w_slot]
        need_b = ctx.b_slot is not None and ctx.has_bias and ctx.needs_input_grad[ctx.b_slot]
        dx = dw = db = None
        if grad_output is not None:
            dx, dw, db = _ops.norm_backward(
                grad_output, x, mean, rstd, ctx.ns, weight, grad_sum, ctx.eps, [need_x, need_w, need_b]
            )
            dx = dx if need_x else None
            dw = dw if need_w else None
            db = db.to(ctx.bias_dtype) if need_b else None
        elif need_x:
            dx = grad_sum
        return dx, dw, db


class LayerNormFunction(_NormFunction):
    """layer_norm as a ``torch.autograd.Function``:
    ``LayerNormFunction.apply(x, normalized_shape, weight=None, bias=None, eps=1e-5)``."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        ns = _normalized_shape(normalized_shape, "layer_norm")
        y, mean, rstd = _ops.layer_norm(input, ns, weight, bias, float(eps))
        ctx.save_for_backward(input, weight, mean, rstd)
        ctx.ns, ctx.eps, ctx.add, ctx.w_slot, ctx.b_slot = ns, float(eps), False, 2, 3
        ctx.has_bias, ctx.bias_dtype = bias is not None, None if bias is None else bias.dtype
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        dx, dw, db = _NormFunction._backward(ctx, grad_output)
        return dx, None, dw, db, None


class RMSNormFunction(_NormFunction):
    """rms_norm: ``RMSNormFunction.apply(x, normalized_shape, weight=None, eps=None)``."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight=None, eps=None):
        ns = _normalized_shape(normalized_shape, "rms_norm")
        eps = _resolve_rms_eps(input, eps)
        y, rstd = _ops.rms_norm(input, ns, weight, eps)
        ctx.save_for_backward(input, weight, None, rstd)
        ctx.ns, ctx.eps, ctx.add, ctx.w_slot, ctx.b_slot, ctx.has_bias = ns, eps, False, 2, None, False
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        dx, dw, _ = _NormFunction._backward(ctx, grad_output)
        return dx, None, dw, None


class AddLayerNormFunction(_NormFunction):
    """add_layer_norm: ``AddLayerNormFunction.apply(x, residual, normalized_shape, weight, bias, eps)``
    -> (normalized, x + residual)."""

    @staticmethod
    def forward(ctx, input, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
        ns = _normalized_shape(normalized_shape, "add_layer_norm")
        y, s, mean, rstd = _ops.add_layer_norm(input, residual, ns, weight, bias, float(eps))
        ctx.save_for_backward(s, weight, mean, rstd)
        ctx.ns, ctx.eps, ctx.add, ctx.w_slot, ctx.b_slot = ns, float(eps), True, 3, 4
        ctx.has_bias, ctx.bias_dtype = bias is not None, None if bias is None else bias.dtype
        ctx.set_materialize_grads(False)
        return y, s

    @staticmethod
    def backward(ctx, grad_output, grad_sum):
        dx, dw, db = _NormFunction._backward(ctx, grad_output, grad_sum)
        return dx, dx, None, dw, db, None


class AddRMSNormFunction(_NormFunction):
    """add_rms_norm: ``AddRMSNormFunction.apply(x, residual, normalized_shape, weight, eps)``
    -> (normalized, x + residual)."""

    @staticmethod
    def forward(ctx, input, residual, normalized_shape, weight=None, eps=None):
        ns = _normalized_shape(normalized_shape, "add_rms_norm")
        eps = _resolve_rms_eps(input, eps)
        y, s, rstd = _ops.add_rms_norm(input, residual, ns, weight, eps)
        ctx.save_for_backward(s, weight, None, rstd)
        ctx.ns, ctx.eps, ctx.add, ctx.w_slot, ctx.b_slot, ctx.has_bias = ns, eps, True, 3, None, False
        ctx.set_materialize_grads(False)
        return y, s

    @staticmethod
    def backward(ctx, grad_output, grad_sum):
        dx, dw, _ = _NormFunction._backward(ctx, grad_output, grad_sum)
        return dx, dx, None, dw, None


def _resolve_rms_eps(input, eps):
    """eps=None: the epsilon of the opmath type, as ATen's rms_norm (float32's for float16 /
    bfloat16 inputs, although F.rms_norm's docs say torch.finfo(input.dtype).eps)."""
    if eps is not None:
        return float(eps)
    return float(torch.finfo(torch.float64 if input.dtype == torch.float64 else torch.float32).eps)


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes, dtypes and the C++ kernels' checks. Outputs are contiguous.

_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _opmath(dtype):
    return torch.float32 if dtype in _REDUCED else dtype


def _check_input(input, normalized_shape, op):
    torch._check(input.dtype in _FLOATS, lambda: f"torch_ops.{op}: expected input to have a floating-point dtype (float64, float32, float16 or bfloat16), got {input.dtype}")
    k = len(normalized_shape)
    torch._check(k >= 1, lambda: f"torch_ops.{op}: expected normalized_shape to be at least 1-dimensional, i.e., containing at least one element, got normalized_shape={list(normalized_shape)}")
    axis = input.dim() - k
    torch._check(
        axis >= 0 and list(input.shape[axis:]) == list(normalized_shape),
        lambda: f"torch_ops.{op}: expected input with shape [*, {', '.join(map(str, normalized_shape))}] (normalized_shape={list(normalized_shape)}), got input of shape {list(input.shape)}",
    )
    return axis


def _check_params(input, normalized_shape, weight, bias, op):
    param = None
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        torch._check(t.device == input.device, lambda: f"torch_ops.{op}: expected {name} to be on the device of input ({input.device}), got {t.device}")
        torch._check(list(t.shape) == list(normalized_shape), lambda: f"torch_ops.{op}: expected {name} to have the shape normalized_shape={list(normalized_shape)}, got {name} of shape {list(t.shape)}")
        ok = t.dtype == input.dtype or (input.dtype in _REDUCED and t.dtype == torch.float32)
        torch._check(ok, lambda: f"torch_ops.{op}: expected {name} to have the dtype of input ({input.dtype}), got {t.dtype}")
        if param is not None:
            torch._check(t.dtype == param, lambda: f"torch_ops.{op}: expected bias to have the dtype of weight ({param}), got {t.dtype}")
        param = t.dtype
    return input.dtype if param is None else param


def _check_residual(input, residual, op):
    torch._check(residual.dtype == input.dtype, lambda: f"torch_ops.{op}: expected residual to have the dtype of input ({input.dtype}), got {residual.dtype}")
    torch._check(residual.device == input.device, lambda: f"torch_ops.{op}: expected residual to be on the device of input ({input.device}), got {residual.device}")
    torch._check(residual.shape == input.shape, lambda: f"torch_ops.{op}: expected residual to have the shape of input {list(input.shape)}, got {list(residual.shape)}")


def _stats(input, axis):
    return input.new_empty(input.shape[:axis], dtype=_opmath(input.dtype))


@torch.library.register_fake("torch_ops::layer_norm")
def _layer_norm_fake(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    axis = _check_input(input, normalized_shape, "layer_norm")
    _check_params(input, normalized_shape, weight, bias, "layer_norm")
    return input.new_empty(input.shape), _stats(input, axis), _stats(input, axis)


@torch.library.register_fake("torch_ops::rms_norm")
def _rms_norm_fake(input, normalized_shape, weight=None, eps=None):
    axis = _check_input(input, normalized_shape, "rms_norm")
    _check_params(input, normalized_shape, weight, None, "rms_norm")
    return input.new_empty(input.shape), _stats(input, axis)


@torch.library.register_fake("torch_ops::add_layer_norm")
def _add_layer_norm_fake(input, residual, normalized_shape, weight=None, bias=None, eps=1e-5):
    axis = _check_input(input, normalized_shape, "add_layer_norm")
    _check_params(input, normalized_shape, weight, bias, "add_layer_norm")
    _check_residual(input, residual, "add_layer_norm")
    return input.new_empty(input.shape), input.new_empty(input.shape), _stats(input, axis), _stats(input, axis)


@torch.library.register_fake("torch_ops::add_rms_norm")
def _add_rms_norm_fake(input, residual, normalized_shape, weight=None, eps=None):
    axis = _check_input(input, normalized_shape, "add_rms_norm")
    _check_params(input, normalized_shape, weight, None, "add_rms_norm")
    _check_residual(input, residual, "add_rms_norm")
    return input.new_empty(input.shape), input.new_empty(input.shape), _stats(input, axis)


@torch.library.register_fake("torch_ops::norm_backward")
def _norm_backward_fake(grad_output, input, mean, rstd, normalized_shape, weight, grad_extra, eps, output_mask):
    op = "norm_backward"
    _check_input(input, normalized_shape, op)
    param = _check_params(input, normalized_shape, weight, None, op)
    torch._check(grad_output.dtype == input.dtype, lambda: f"torch_ops.{op}: expected grad_output to have the dtype of input ({input.dtype}), got {grad_output.dtype}")
    torch._check(grad_output.shape == input.shape, lambda: f"torch_ops.{op}: expected grad_output to have the shape of input {list(input.shape)}, got {list(grad_output.shape)}")
    if grad_extra is not None:
        torch._check(grad_extra.dtype == input.dtype and grad_extra.shape == input.shape, lambda: f"torch_ops.{op}: expected grad_extra to have the dtype and shape of input")
    rms = mean is None
    want_dx, want_dw, want_db = output_mask[0], output_mask[1] and weight is not None, output_mask[2] and not rms
    dx = input.new_empty(input.shape) if want_dx else input.new_empty((0,))
    dw = input.new_empty(normalized_shape, dtype=param) if want_dw else input.new_empty((0,), dtype=param)
    db = input.new_empty(normalized_shape, dtype=param) if want_db else input.new_empty((0,), dtype=param)
    return dx, dw, db


# ---------------------------------------------------------------------------------------
# Benchmarks


def _eager_add_layer_norm(x, r, w, b):
    return torch.nn.functional.layer_norm(x + r, w.shape, w, b)


def _eager_add_rms_norm(x, r, w):
    return torch.nn.functional.rms_norm(x + r, w.shape, w)


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench --ops layer_norm,rms_norm,add_layer_norm,add_rms_norm``).

    Rows x hidden: 32x64 (overhead), 8192x1024, 2048x4096 and 64x65536 (bandwidth), with an
    affine weight (and bias) that require grad. References: F.layer_norm / F.rms_norm, and
    for the add variants the eager ``x + r`` followed by the norm; torch.compile of the
    reference is timed too. The add variants return the normalized output only here (one
    tensor per case), so forward+backward differentiates through it alone.
    """
    import torch.nn.functional as F

    from .bench import Case

    def inputs(m, n, add, bias):
        def make(device, dtype):
            t = [torch.randn(m, n, device=device, dtype=dtype, requires_grad=True)]
            if add:
                t.append(torch.randn(m, n, device=device, dtype=dtype, requires_grad=True))
            t.append((1 + 0.1 * torch.randn(n, device=device, dtype=dtype)).requires_grad_())
            if bias:
                t.append((0.1 * torch.randn(n, device=device, dtype=dtype)).requires_grad_())
            return tuple(t)

        return make

    ops = [
        ("layer_norm", False, True, lambda x, w, b: layer_norm(x, w.shape, w, b), lambda x, w, b: F.layer_norm(x, w.shape, w, b)),
        ("rms_norm", False, False, lambda x, w: rms_norm(x, w.shape, w), lambda x, w: F.rms_norm(x, w.shape, w)),
        ("add_layer_norm", True, True, lambda x, r, w, b: add_layer_norm(x, r, w.shape, w, b)[0], _eager_add_layer_norm),
        ("add_rms_norm", True, False, lambda x, r, w: add_rms_norm(x, r, w.shape, w)[0], _eager_add_rms_norm),
    ]
    shapes = [("small", "small", 32, 64), ("8192x1024", "large", 8192, 1024), ("2048x4096", "large", 2048, 4096), ("64x65536", "large", 64, 65536)]
    cases = []
    for name, add, bias, ours, eager in ops:
        for case_name, size, m, n in shapes:
            cases.append(Case(name, case_name, f"x {m}x{n}", inputs(m, n, add, bias), ours=ours, eager=eager, compile=True, size=size))
    return cases
