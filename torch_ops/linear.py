"""linear: y = x W^T + b, the functional op, its autograd Function and its fake kernels.

Kernels: csrc/linear.cpp (shared host code: checks, reshape, GEMM with the bias fused),
csrc/cpu/linear.cpp and cuda/linear.cu (the bias-gradient reductions), autograd in
csrc/autograd/linear.cpp. Dispatcher ops (schemas in csrc/ops.cpp):

* ``linear(input, weight, bias=None)``: input (*, in), weight (out, in), bias (out,)
* ``linear_grad_weight(grad_output, input)``: (out, in)
* ``linear_grad_bias(grad_output)``: (out,)
* ``linear_backward(grad_output, input, weight, output_mask)``: the gradient formula
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from torch.overrides import handle_torch_function

from . import _C
from ._dispatch import _has_torch_function, _is_compiling

_op = torch.ops.torch_ops.linear.default
_fast = _C.linear


def _linear_general(input: Tensor, weight: Tensor, bias: Optional[Tensor], entry) -> Tensor:
    """What F.linear accepts beyond the op's (out, in) weight and (out,) bias.

    A 1-D weight (in,) is one output feature whose dimension is dropped; a bias of any
    other shape is added after the GEMM, broadcast to the output without changing its
    shape (as F.linear's in-place add does). Gradients flow through torch's views/adds.
    """
    squeeze = weight.dim() == 1
    if squeeze:
        weight = weight.unsqueeze(0)
    if weight.dim() != 2:  # let the op raise its error
        return entry(input, weight, bias)
    if bias is not None and bias.dim() == 1 and bias.shape[0] == 1 and not squeeze:
        out = entry(input, weight, bias.expand(weight.shape[0]))
    else:
        out = entry(input, weight, None)
        if squeeze:
            out = out.squeeze(-1)
        if bias is not None:
            try:
                shape = torch.broadcast_shapes(out.shape, bias.shape)
            except RuntimeError:
                shape = None
            if shape != out.shape:
                raise RuntimeError(
                    f"torch_ops.linear: expected bias to broadcast to the output shape {tuple(out.shape)}, got "
                    f"shape {tuple(bias.shape)} (use ({weight.shape[0]},) or ())"
                )
            out = out + bias
        return out
    return out.squeeze(-1) if squeeze else out


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``torch.nn.functional.linear`` with torch_ops kernels: y = input @ weight.T + bias.

    input (*, in_features); weight (out_features, in_features) or (in_features,);
    bias (out_features,), (), or any shape that broadcasts to the output; None.
    Differentiable to any order.
    """
    if _is_compiling():
        if weight.dim() != 2 or (bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0])):
            return _linear_general(input, weight, bias, _op)
        return _op(input, weight, bias)
    if _has_torch_function((input, weight, bias)):
        return handle_torch_function(linear, (input, weight, bias), input, weight, bias=bias)
    try:
        out = _fast(input, weight, bias)  # None for the shapes only _linear_general takes
    except TypeError:
        raise TypeError(
            "torch_ops.linear: expected input, weight (and bias) to be Tensors, got "
            f"{type(input).__name__}, {type(weight).__name__}, {type(bias).__name__}"
        ) from None
    return _linear_general(input, weight, bias, _op) if out is None else out


class LinearFunction(torch.autograd.Function):
    """y = x W^T + b as a ``torch.autograd.Function``: ``LinearFunction.apply(x, w, b)``.

    Saves x only when W needs a gradient and W only when x does. Its backward is the
    gradient formula the dispatcher op's autograd uses (``torch.ops.torch_ops.linear_backward``,
    written once in C++), made of differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        return torch.ops.torch_ops.linear(input, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs
        need_input, need_weight, _ = ctx.needs_input_grad
        ctx.save_for_backward(input if need_weight else None, weight if need_input else None)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grads = iter(torch.ops.torch_ops.linear_backward(grad_output, input, weight, mask))
        return tuple(next(grads) if m else None for m in mask)


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes, dtypes and the same checks, for torch.compile and opcheck.


_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _check_float(t, name, op):
    torch._check(t.dtype in _FLOATS, lambda: f"torch_ops.{op}: expected {name} to have a floating-point dtype (float64, float32, float16 or bfloat16), got {t.dtype}")


def _check_like(a, a_name, b, b_name, op):
    """The dtype and device checks of the C++ kernels (csrc/include/torch_ops/checks.h)."""
    torch._check(a.dtype == b.dtype, lambda: f"torch_ops.{op}: expected {b_name} to have the dtype of {a_name} ({a.dtype}), got {b.dtype}")
    torch._check(a.device == b.device, lambda: f"torch_ops.{op}: expected {b_name} to be on the device of {a_name} ({a.device}), got {b.device}")


@torch.library.register_fake("torch_ops::linear")
def _linear_fake(input, weight, bias=None):
    torch._check(input.dim() >= 1, lambda: f"torch_ops.linear: expected input to have at least 1 dimension, got {input.dim()}-D")
    torch._check(weight.dim() == 2, lambda: f"torch_ops.linear: expected weight to be 2-D, got {weight.dim()}-D")
    _check_float(input, "input", "linear")
    _check_like(input, "input", weight, "weight", "linear")
    torch._check(
        input.shape[-1] == weight.shape[1],
        lambda: f"torch_ops.linear: expected input.size(-1) to equal in_features = weight.size(1) = {weight.shape[1]}, got input shape {tuple(input.shape)}",
    )
    if bias is not None:
        _check_like(input, "input", bias, "bias", "linear")
        torch._check(bias.dim() == 1 and bias.shape[0] == weight.shape[0], lambda: f"torch_ops.linear: expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


@torch.library.register_fake("torch_ops::linear_grad_weight")
def _linear_grad_weight_fake(grad_output, input):
    torch._check(grad_output.dim() >= 1, lambda: "torch_ops.linear_grad_weight: expected grad_output to have at least 1 dimension")
    _check_float(grad_output, "grad_output", "linear_grad_weight")
    _check_like(grad_output, "grad_output", input, "input", "linear_grad_weight")
    torch._check(grad_output.dim() == input.dim() and grad_output.shape[:-1] == input.shape[:-1], lambda: "torch_ops.linear_grad_weight: expected input and grad_output to have the same leading dimensions")
    return grad_output.new_empty((grad_output.shape[-1], input.shape[-1]))


@torch.library.register_fake("torch_ops::linear_grad_bias")
def _linear_grad_bias_fake(grad_output):
    torch._check(grad_output.dim() >= 1, lambda: "torch_ops.linear_grad_bias: expected grad_output to have at least 1 dimension")
    _check_float(grad_output, "grad_output", "linear_grad_bias")
    return grad_output.new_empty((grad_output.shape[-1],))


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench``): torch_ops.linear vs F.linear, with bias.

    small is overhead-bound; large is the acceptance case (torch_ops.linear >= 0.95x F.linear).
    """
    import torch.nn.functional as F

    from .bench import Case

    def case(name, m, k, n):
        def make_inputs(device, dtype):
            x = torch.randn(m, k, device=device, dtype=dtype, requires_grad=True)
            w = (torch.randn(n, k, device=device, dtype=dtype) / k**0.5).requires_grad_()
            b = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
            return x, w, b

        shape = f"x {m}x{k}, W {n}x{k}, b {n}"
        return Case("linear", name, shape, make_inputs, ours=linear, eager=F.linear,
                    flops_fwd=2 * m * n * k, flops_bwd=4 * m * n * k)  # fmt: skip

    return [case("small", 32, 64, 64), case("medium", 512, 1024, 1024), case("large", 4096, 1024, 1024)]
