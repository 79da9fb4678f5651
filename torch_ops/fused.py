"""fused: ``act(F.linear(input, weight, bias))`` in one op, the bias and the activation in
the GEMM's epilogue, and its autograd Function and fake kernels.

Kernels: csrc/fused.cpp (host code: linear's checks, the row-blocked GEMM with the
activation applied to each block while it is in cache), csrc/cpu/fused.cpp and
cuda/fused.cu (the backward's activation gradient fused with the bias reduction), autograd
in csrc/autograd/fused.cpp. The activation formulas are the activation family's. Ops
(schemas in csrc/ops.cpp):

* ``fused_linear(input, weight, bias=None, activation=None)``
* ``fused_linear_preact(input, weight, bias, activation)``: (output, pre-activation)
* ``fused_linear_act_grad(grad_output, saved, activation, bias)``: (grad_pre, grad_bias)
* ``fused_linear_backward(grad_output, input, weight, bias, saved, activation, output_mask)``
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.overrides import handle_torch_function

from . import _C
from ._dispatch import _has_torch_function, _is_compiling
from .linear import _check_float, _check_like

ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh", "silu")

_op = torch.ops.torch_ops.fused_linear.default


def _check_activation(activation, op="fused_linear"):
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"torch_ops.{op}: expected activation to be a str or None, got {type(activation).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"torch_ops.{op}: expected activation to be None, 'relu', 'gelu', 'gelu_tanh' or 'silu', got '{activation}'")


def fused_linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None) -> Tensor:
    """``act(torch.nn.functional.linear(input, weight, bias))`` in one op.

    input (*, in_features); weight (out_features, in_features); bias (out_features,) or
    None; activation None, ``'relu'``, ``'gelu'``, ``'gelu_tanh'`` (gelu with
    approximate='tanh') or ``'silu'``. The pre-activation is kept for the backward only
    when a gradient is needed and the activation's gradient needs it (gelu, silu; relu's
    is taken from the output). Differentiable twice (double backward).
    """
    if _has_torch_function((input, weight, bias)):
        return handle_torch_function(fused_linear, (input, weight, bias), input, weight, bias=bias, activation=activation)
    _check_activation(activation)
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor) or not (bias is None or isinstance(bias, Tensor)):
        raise TypeError(
            "torch_ops.fused_linear: expected input, weight (and bias) to be Tensors, got "
            f"{type(input).__name__}, {type(weight).__name__}, {type(bias).__name__}"
        )
    return _op(input, weight, bias, activation) if _is_compiling() else _C.fused_linear(input, weight, bias, activation)


class FusedLinearFunction(torch.autograd.Function):
    """``act(x W^T + b)`` as a ``torch.autograd.Function``:
    ``FusedLinearFunction.apply(x, w, b, activation)``.

    Saves what the op's own autograd saves: x when W needs a gradient and W when x does;
    the output for relu; for gelu and silu the pre-activation together with x, W and b
    (the double backward recomputes the pre-activation from them). Its backward is the
    gradient formula the dispatcher op uses (``torch.ops.torch_ops.fused_linear_backward``,
    written once in C++), made of differentiable ops, so double backward works.
    """

    @staticmethod
    def forward(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: Optional[str] = None):
        _check_activation(activation)
        if activation in ("gelu", "gelu_tanh", "silu"):
            return torch.ops.torch_ops.fused_linear_preact(input, weight, bias, activation)
        out = torch.ops.torch_ops.fused_linear(input, weight, bias, activation)
        return out, None

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, activation = inputs
        out, pre = output
        ctx.activation = activation
        ctx.has_bias = bias is not None
        need_input, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if pre is not None:
            ctx.mark_non_differentiable(pre)
            ctx.save_for_backward(input, weight, bias, pre)
        else:
            ctx.save_for_backward(input if need_weight else None, weight if need_input else None, None,
                                  out if activation == "relu" else None)

    @staticmethod
    def backward(ctx, grad_output, _grad_pre):
        input, weight, bias, saved = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grads = iter(torch.ops.torch_ops.fused_linear_backward(grad_output, input, weight, bias, saved, ctx.activation, mask))
        return (*(next(grads) if m else None for m in mask), None)

    @classmethod
    def apply(cls, input, weight, bias=None, activation=None):  # noqa: D102 - returns the output only
        return super().apply(input, weight, bias, activation)[0]


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels.


def _check_linear_args(op, input, weight, bias):
    torch._check(input.dim() >= 1, lambda: f"torch_ops.{op}: expected input to have at least 1 dimension, got {input.dim()}-D")
    torch._check(weight.dim() == 2, lambda: f"torch_ops.{op}: expected weight to be 2-D, got {weight.dim()}-D")
    _check_float(input, "input", op)
    _check_like(input, "input", weight, "weight", op)
    torch._check(
        input.shape[-1] == weight.shape[1],
        lambda: f"torch_ops.{op}: expected input.size(-1) to equal in_features = weight.size(1) = {weight.shape[1]}, got input shape {tuple(input.shape)}",
    )
    if bias is not None:
        _check_like(input, "input", bias, "bias", op)
        torch._check(bias.dim() == 1 and bias.shape[0] == weight.shape[0], lambda: f"torch_ops.{op}: expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def _fake_activation(activation, op, allow_none=True):
    torch._check(activation in ACTIVATIONS and (allow_none or activation is not None), lambda: f"torch_ops.{op}: expected activation to be None, 'relu', 'gelu', 'gelu_tanh' or 'silu', got '{activation}'")


@torch.library.register_fake("torch_ops::fused_linear")
def _fused_linear_fake(input, weight, bias=None, activation=None):
    _fake_activation(activation, "fused_linear")
    _check_linear_args("fused_linear", input, weight, bias)
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


@torch.library.register_fake("torch_ops::fused_linear_preact")
def _fused_linear_preact_fake(input, weight, bias, activation):
    _fake_activation(activation, "fused_linear_preact", allow_none=False)
    _check_linear_args("fused_linear_preact", input, weight, bias)
    shape = (*input.shape[:-1], weight.shape[0])
    return input.new_empty(shape), input.new_empty(shape)


@torch.library.register_fake("torch_ops::fused_linear_act_grad")
def _fused_linear_act_grad_fake(grad_output, saved, activation, bias):
    op = "fused_linear_act_grad"
    _fake_activation(activation, op, allow_none=False)
    torch._check(grad_output.dim() >= 1, lambda: f"torch_ops.{op}: expected grad_output to have at least 1 dimension")
    _check_float(grad_output, "grad_output", op)
    _check_like(grad_output, "grad_output", saved, "saved", op)
    torch._check(saved.shape == grad_output.shape, lambda: f"torch_ops.{op}: expected saved to have the shape of grad_output {tuple(grad_output.shape)}, got {tuple(saved.shape)}")
    return grad_output.new_empty(grad_output.shape), grad_output.new_empty((grad_output.shape[-1] if bias else 0,))


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench``): fused_linear against eager
    ``act(F.linear(...))`` and torch.compile of it, with bias, for relu, gelu and silu.

    small is overhead-bound; gemm is GEMM-bound (M=8192, K=N=1024); wide is where the
    elementwise work is a large share (M=16384, K=128, N=512).
    """
    import torch.nn.functional as F

    from .bench import Case

    acts = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu}

    def case(act, name, m, k, n):
        def make_inputs(device, dtype):
            x = torch.randn(m, k, device=device, dtype=dtype, requires_grad=True)
            w = (torch.randn(n, k, device=device, dtype=dtype) / k**0.5).requires_grad_()
            b = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
            return x, w, b

        f = acts[act]

        def eager(x, w, b):
            return f(F.linear(x, w, b))

        def ours(x, w, b):
            return fused_linear(x, w, b, act)

        return Case(f"fused_linear_{act}", name, f"x {m}x{k}, W {n}x{k}, b {n}", make_inputs, ours=ours, eager=eager,
                    compile=True, flops_fwd=2 * m * n * k, flops_bwd=4 * m * n * k,
                    size="small" if name == "small" else "large")  # fmt: skip

    shapes = (("small", (32, 64, 64)), ("gemm", (8192, 1024, 1024)), ("wide", (16384, 128, 512)))
    return [case(a, nm, *shape) for a in acts for nm, shape in shapes]
