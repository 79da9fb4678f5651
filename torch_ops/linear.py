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

from . import _C
from ._dispatch import use_torch_ops

_op = torch.ops.torch_ops.linear.default
_fast = _C.linear


def _canonical_weight_bias(weight: Tensor, bias: Optional[Tensor]):
    """What F.linear accepts beyond the op's (out, in) weight and (out,) bias.

    A 1-D weight (in,) is one output feature whose dimension is dropped; a 0-D bias (or a
    (1,) bias for a single output) broadcasts. Returns (weight, bias, squeeze_last).
    """
    squeeze = weight.dim() == 1
    if squeeze:
        weight = weight.unsqueeze(0)
    if bias is not None and bias.dim() != 1 or (squeeze and bias is not None):
        if bias.dim() == 0 or (bias.dim() == 1 and bias.shape[0] == 1):
            bias = bias.reshape(1).expand(weight.shape[0])
        elif not squeeze:
            raise RuntimeError(
                f"torch_ops.linear: expected bias to be 1-D with out_features = {weight.shape[0]} elements "
                f"(or 0-D), got shape {tuple(bias.shape)}"
            )
        else:
            raise RuntimeError(
                "torch_ops.linear: with a 1-D weight the output has no feature dimension, so bias must be "
                f"0-D (or have one element), got shape {tuple(bias.shape)}"
            )
    return weight, bias, squeeze


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``torch.nn.functional.linear`` with torch_ops kernels: y = input @ weight.T + bias.

    input (*, in_features); weight (out_features, in_features) or (in_features,);
    bias (out_features,), () or None. Differentiable to any order.
    """
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor) or not (bias is None or isinstance(bias, Tensor)):
        raise TypeError(
            "torch_ops.linear: expected input, weight (and bias) to be Tensors, got "
            f"{type(input).__name__}, {type(weight).__name__}, {type(bias).__name__}"
        )
    if weight.dim() != 2 or (bias is not None and bias.dim() != 1):
        weight, bias, squeeze = _canonical_weight_bias(weight, bias)
        out = _op(input, weight, bias) if use_torch_ops((input, weight, bias)) else _fast(input, weight, bias)
        return out.squeeze(-1) if squeeze else out
    if use_torch_ops((input, weight, bias)):
        return _op(input, weight, bias)
    return _fast(input, weight, bias)


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


def _check_like(a, a_name, b, b_name, op):
    """The dtype and device checks of the C++ kernels (csrc/include/torch_ops/checks.h)."""
    torch._check(a.dtype == b.dtype, lambda: f"torch_ops.{op}: expected {b_name} to have the dtype of {a_name} ({a.dtype}), got {b.dtype}")
    torch._check(a.device == b.device, lambda: f"torch_ops.{op}: expected {b_name} to be on the device of {a_name} ({a.device}), got {b.device}")


@torch.library.register_fake("torch_ops::linear")
def _linear_fake(input, weight, bias=None):
    torch._check(input.dim() >= 1, lambda: f"torch_ops.linear: expected input to have at least 1 dimension, got {input.dim()}-D")
    torch._check(weight.dim() == 2, lambda: f"torch_ops.linear: expected weight to be 2-D, got {weight.dim()}-D")
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
    _check_like(grad_output, "grad_output", input, "input", "linear_grad_weight")
    torch._check(grad_output.dim() == input.dim() and grad_output.shape[:-1] == input.shape[:-1], lambda: "torch_ops.linear_grad_weight: expected input and grad_output to have the same leading dimensions")
    return grad_output.new_empty((grad_output.shape[-1], input.shape[-1]))


@torch.library.register_fake("torch_ops::linear_grad_bias")
def _linear_grad_bias_fake(grad_output):
    torch._check(grad_output.dim() >= 1, lambda: "torch_ops.linear_grad_bias: expected grad_output to have at least 1 dimension")
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
