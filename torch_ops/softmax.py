"""The softmax family: softmax, log_softmax, cross_entropy and linear_cross_entropy:
functional ops, autograd Functions, fake kernels and benchmark cases.

Kernels: csrc/softmax.cpp (host code: checks, the reduced dimension made last),
csrc/cpu/kernels/softmax.h and cuda/softmax.cu (the row kernels), the math once in
csrc/include/torch_ops/softmax_math.h; autograd in csrc/autograd/softmax.cpp.
Dispatcher ops (schemas in csrc/ops.cpp):

* ``softmax(input, dim, dtype=None)``, ``log_softmax(input, dim, dtype=None)`` (``dtype``: the
  input is cast to it first) and their ``<op>_backward(grad_output, output, dim)``
* ``cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing)`` (reduction
  0 none, 1 mean, 2 sum); ``cross_entropy_forward`` -> (loss, row_max, log_sum, total_weight),
  what the backward ``cross_entropy_backward`` needs to write the gradient in one pass (each
  row's log-sum-exp as row_max + log_sum, kept apart so that x - lse keeps its small values);
  ``cross_entropy_target_backward`` (probability targets)
* ``linear_cross_entropy(input, weight, target, bias, ignore_index, reduction,
  label_smoothing, chunk_size, out_dtype=None)`` = cross_entropy(linear(input, weight, bias),
  target) without the (N, V) logits (``out_dtype``: the loss's dtype, default the input's);
  ``linear_cross_entropy_chunked`` computes the loss and the gradients.

Under autocast (registered at the Autocast keys, csrc/autograd/softmax.cpp) each op does what
PyTorch's policy does with its torch counterpart: softmax / log_softmax run in float32 on CUDA
(unless ``dtype`` is given) and in the input's dtype on CPU; cross_entropy runs in float32 on
both; linear_cross_entropy runs its GEMMs in the autocast dtype and returns a float32 loss, as
``cross_entropy(linear(...))`` does.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor
from torch.nn import _reduction as _Reduction


_ops = torch.ops.torch_ops

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _check_tensor(t, name: str, op: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"torch_ops.{op}: expected {name} to be a Tensor, got {type(t).__name__}")


def _softmax_dim(input, dim, _stacklevel, op):
    _check_tensor(input, "input", op)
    if dim is None:
        dim = torch.nn.functional._get_softmax_dim(op, input.dim(), _stacklevel + 1)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"torch_ops.{op}: expected dim to be an int, got {type(dim).__name__}")
    return dim


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.nn.functional.softmax``: exp(input) / sum(exp(input), dim). ``dim=None`` takes
    PyTorch's legacy choice (with its warning); ``dtype`` casts the input first."""
    return _ops.softmax.default(input, _softmax_dim(input, dim, _stacklevel, "softmax"), dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.nn.functional.log_softmax``: input - logsumexp(input, dim)."""
    return _ops.log_softmax.default(input, _softmax_dim(input, dim, _stacklevel, "log_softmax"), dtype)


def _reduction_enum(size_average, reduce, reduction) -> int:
    if size_average is not None or reduce is not None:
        reduction = _Reduction.legacy_get_string(size_average, reduce)
    return _Reduction.get_enum(reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``torch.nn.functional.cross_entropy``: class-index or class-probability targets,
    inputs (C), (N, C) or (N, C, d1, ..., dK), class weights, ignore_index, every reduction,
    label smoothing. The forward computes the log-sum-exp and the loss in one pass over the
    logits (log_softmax is never materialised); the backward writes the gradient in one pass."""
    _check_tensor(input, "input", "cross_entropy")
    _check_tensor(target, "target", "cross_entropy")
    red = _reduction_enum(size_average, reduce, reduction)
    if not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"torch_ops.cross_entropy: expected label_smoothing to be a float, got {type(label_smoothing).__name__}")
    return _ops.cross_entropy.default(input, target, weight, red, int(ignore_index), float(label_smoothing))


def linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
) -> Tensor:
    """``cross_entropy(linear(input, weight, bias), target)`` without ever holding the
    (N, V) logits: rows in chunks of ``chunk_size`` (default: about the input's size in
    logits, at most 64 MiB), each chunk's logits by one GEMM, its loss and its logits'
    gradient by one cross-entropy kernel in place, the gradients of input, weight and bias
    accumulated chunk by chunk. Extra memory O(chunk_size x V). Class-index targets of the
    input's leading shape; the loss layer of a language model."""
    for t, name in ((input, "input"), (weight, "weight"), (target, "target")):
        _check_tensor(t, name, "linear_cross_entropy")
    red = _REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if red is None:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"torch_ops.linear_cross_entropy: expected chunk_size to be a positive int, got {chunk_size!r}")
    return _ops.linear_cross_entropy.default(
        input, weight, target, bias, int(ignore_index), red, float(label_smoothing), chunk_size
    )


# ---------------------------------------------------------------------------------------
# autograd Functions. Their backward calls the dispatcher's backward ops, which have
# autograd of their own (csrc/autograd/softmax.cpp): double backward works through them.


class SoftmaxFunction(torch.autograd.Function):
    """softmax: ``SoftmaxFunction.apply(x, dim)``. Saves the result."""

    @staticmethod
    def forward(input: Tensor, dim: int) -> Tensor:
        return _ops.softmax(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.dim = inputs[1]

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        return _ops.softmax_backward(grad_output, output, ctx.dim), None


class LogSoftmaxFunction(torch.autograd.Function):
    """log_softmax: ``LogSoftmaxFunction.apply(x, dim)``. Saves the result."""

    @staticmethod
    def forward(input: Tensor, dim: int) -> Tensor:
        return _ops.log_softmax(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.dim = inputs[1]

    @staticmethod
    def backward(ctx, grad_output):
        (output,) = ctx.saved_tensors
        return _ops.log_softmax_backward(grad_output, output, ctx.dim), None


class CrossEntropyFunction(torch.autograd.Function):
    """cross_entropy: ``CrossEntropyFunction.apply(input, target, weight=None, reduction='mean',
    ignore_index=-100, label_smoothing=0.0)``. Saves the inputs and the per-row log-sum-exp."""

    @staticmethod
    def forward(ctx, input, target, weight=None, reduction="mean", ignore_index=-100, label_smoothing=0.0):
        red = _Reduction.get_enum(reduction)
        loss, row_max, log_sum, total_weight = _ops.cross_entropy_forward(input, target, weight, red, ignore_index, label_smoothing)
        ctx.save_for_backward(input, target, weight, row_max, log_sum, total_weight)
        ctx.args = (red, ignore_index, label_smoothing)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight, row_max, log_sum, total_weight = ctx.saved_tensors
        red, ignore_index, label_smoothing = ctx.args
        if ctx.needs_input_grad[2]:
            raise RuntimeError("torch_ops.cross_entropy: the derivative for 'weight' (the class weights) is not implemented")
        d_input = d_target = None
        if ctx.needs_input_grad[0]:
            d_input = _ops.cross_entropy_backward(
                grad_output, input, target, weight, red, ignore_index, label_smoothing, row_max, log_sum, total_weight
            )
        if ctx.needs_input_grad[1]:
            d_target = _ops.cross_entropy_target_backward(grad_output, input, target, weight, red, label_smoothing)
        return d_input, d_target, None, None, None, None


class LinearCrossEntropyFunction(torch.autograd.Function):
    """linear_cross_entropy: ``LinearCrossEntropyFunction.apply(input, weight, target, bias=None,
    ignore_index=-100, reduction='mean', label_smoothing=0.0, chunk_size=None)``.

    With reduction mean / sum the forward computes the gradients with the loss (chunk by
    chunk) and the backward scales them by grad_output; with reduction none the backward
    recomputes them chunk by chunk. Under ``create_graph`` the backward differentiates
    ``cross_entropy(linear(...))`` instead (full logits), so double backward is exact.
    """

    @staticmethod
    def forward(ctx, input, weight, target, bias=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, chunk_size=None):
        red = _REDUCTIONS[reduction]
        chunk = int(chunk_size or 0)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[3]]
        eager = red != 0 and any(mask)
        loss, gi, gw, gb = _ops.linear_cross_entropy_chunked(
            input, weight, target, bias, None, ignore_index, red, label_smoothing, chunk, mask if eager else [False] * 3
        )
        ctx.save_for_backward(input, weight, target, bias)
        ctx.args = (ignore_index, red, label_smoothing, chunk)
        ctx.grads = [t if m else None for t, m in zip((gi, gw, gb), mask)] if eager else None
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, target, bias = ctx.saved_tensors
        ignore_index, red, label_smoothing, chunk = ctx.args
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[3]]
        out = [None, None, None]
        if torch.is_grad_enabled():
            wanted = [t for t, n in zip((input, weight, bias), need) if n]
            logits = _ops.linear(input, weight, bias)
            loss = _ops.cross_entropy(logits.reshape(-1, weight.shape[0]), target.reshape(-1), None, red, ignore_index, label_smoothing)
            if red == 0:
                loss = loss.view(target.shape)
            res = iter(torch.autograd.grad(loss, wanted, grad_output, create_graph=True))
            out = [next(res) if n else None for n in need]
        elif ctx.grads is not None and all(g is not None for g, n in zip(ctx.grads, need) if n):
            grads, ctx.grads = ctx.grads, None  # scaled in place once; a second backward recomputes
            out = [g.mul_(grad_output) if n else None for g, n in zip(grads, need)]
        else:
            _, gi, gw, gb = _ops.linear_cross_entropy_chunked(
                input, weight, target, bias, grad_output, ignore_index, red, label_smoothing, chunk, need
            )
            out = [t if n else None for t, n in zip((gi, gw, gb), need)]
        return out[0], out[1], None, out[2], None, None, None, None


# ---------------------------------------------------------------------------------------
# Fake (meta) kernels: shapes and dtypes, and the checks that need no data.


def _check_floating(t, name, op):
    torch._check(
        t.is_floating_point(),
        lambda: f"torch_ops.{op}: expected {name} to have a floating-point dtype (float64, float32, float16 or bfloat16), got {t.dtype}",
    )


def _wrap(dim, ndim):
    n = max(ndim, 1)
    torch._check_index(-n <= dim < n, lambda: f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim + n if dim < 0 else dim


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _softmax_fake(op):
    def fake(input, dim, dtype=None):
        if dtype is not None:
            input = input.to(dtype)
        _check_floating(input, "input", op)
        _wrap(dim, input.dim())
        return input.new_empty(input.shape)

    return fake


torch.library.register_fake("torch_ops::softmax", _softmax_fake("softmax"))
torch.library.register_fake("torch_ops::log_softmax", _softmax_fake("log_softmax"))


def _backward_fake(op):
    def fake(grad_output, output, dim):
        _check_floating(grad_output, "grad_output", op)
        _check_floating(output, "output", op)
        torch._check(output.dtype == grad_output.dtype, lambda: f"torch_ops.{op}: expected output to have the dtype of grad_output ({grad_output.dtype}), got {output.dtype}")
        torch._check(output.shape == grad_output.shape, lambda: f"torch_ops.{op}: expected output to have the shape of grad_output {tuple(grad_output.shape)}, got {tuple(output.shape)}")
        _wrap(dim, grad_output.dim())
        return grad_output.new_empty(grad_output.shape)

    return fake


torch.library.register_fake("torch_ops::softmax_backward", _backward_fake("softmax_backward"))
torch.library.register_fake("torch_ops::log_softmax_backward", _backward_fake("log_softmax_backward"))


def _ce_shapes(input, target, op):
    """(none_shape, rows, prob) of cross_entropy's arguments, with PyTorch's checks."""
    _check_floating(input, "input", op)
    torch._check(input.dim() >= 1, lambda: f"torch_ops.{op}: expected input to have at least 1 dimension (the classes), got 0-D")
    class_dim = 0 if input.dim() == 1 else 1
    C = input.shape[class_dim]
    prob = tuple(input.shape) == tuple(target.shape)
    if prob:
        torch._check(target.is_floating_point(), lambda: f"Expected floating point type for target with class probabilities, got {target.dtype}")
        shape = list(input.shape)
        del shape[class_dim]
    else:
        torch._check(target.dtype == torch.long, lambda: f"expected scalar type Long but found {target.dtype}")
        shape = list(target.shape)
        if input.dim() == 2:
            torch._check(target.dim() <= 1, lambda: "0D or 1D target tensor expected, multi-target not supported")
            torch._check_value(target.dim() == 1 and target.shape[0] == input.shape[0], lambda: f"Expected input batch_size ({input.shape[0]}) to match target batch_size.")
        elif input.dim() > 2:
            expected = [input.shape[0]] + list(input.shape[2:])
            torch._check(list(target.shape) == expected, lambda: f"Expected target size {expected}, got {list(target.shape)}")
    rows = input.numel() // C if input.dim() > 1 else 1
    return shape, rows, prob


@torch.library.register_fake("torch_ops::cross_entropy_forward")
def _ce_forward_fake(input, target, weight, reduction, ignore_index, label_smoothing):
    shape, rows, _ = _ce_shapes(input, target, "cross_entropy")
    acc = _acc(input.dtype)
    loss = input.new_empty(shape if reduction == 0 else ())
    total_weight = input.new_empty((), dtype=acc) if reduction == 1 else input.new_empty((0,), dtype=acc)
    return loss, input.new_empty((rows,), dtype=acc), input.new_empty((rows,), dtype=acc), total_weight


@torch.library.register_fake("torch_ops::cross_entropy")
def _ce_fake(input, target, weight=None, reduction=1, ignore_index=-100, label_smoothing=0.0):
    return _ce_forward_fake(input, target, weight, reduction, ignore_index, label_smoothing)[0]


@torch.library.register_fake("torch_ops::cross_entropy_backward")
def _ce_backward_fake(grad_output, input, target, weight, reduction, ignore_index, label_smoothing, row_max, log_sum, total_weight):
    _ce_shapes(input, target, "cross_entropy_backward")
    return input.new_empty(input.shape)


@torch.library.register_fake("torch_ops::linear_cross_entropy_chunked")
def _lce_chunked_fake(input, weight, target, bias, grad_output, ignore_index, reduction, label_smoothing, chunk_size, output_mask, out_dtype=None):
    _check_floating(input, "input", "linear_cross_entropy")
    torch._check(weight.dim() == 2, lambda: f"torch_ops.linear_cross_entropy: expected weight to be 2-D, got {weight.dim()}-D")
    torch._check(input.shape[-1] == weight.shape[1], lambda: "torch_ops.linear_cross_entropy: expected input.size(-1) to equal weight.size(1)")
    torch._check(target.dtype == torch.long, lambda: f"expected scalar type Long but found {target.dtype}")
    torch._check_value(list(target.shape) == list(input.shape[:-1]), lambda: f"torch_ops.linear_cross_entropy: expected target of shape {list(input.shape[:-1])}")
    torch._check(out_dtype is None or out_dtype.is_floating_point, lambda: f"torch_ops.linear_cross_entropy: expected out_dtype to be a floating-point dtype, got {out_dtype}")
    loss = input.new_empty(tuple(target.shape) if reduction == 0 else (), dtype=out_dtype or input.dtype)
    empty = input.new_empty((0,))
    gi = input.new_empty(input.shape) if output_mask[0] else empty
    gw = input.new_empty(weight.shape) if output_mask[1] else input.new_empty((0,))
    gb = input.new_empty((weight.shape[0],)) if output_mask[2] else input.new_empty((0,))
    return loss, gi, gw, gb


@torch.library.register_fake("torch_ops::linear_cross_entropy")
def _lce_fake(input, weight, target, bias=None, ignore_index=-100, reduction=1, label_smoothing=0.0, chunk_size=None, out_dtype=None):
    return _lce_chunked_fake(input, weight, target, bias, None, ignore_index, reduction, label_smoothing, 0, [False] * 3, out_dtype)[0]


# ---------------------------------------------------------------------------------------
# Benchmarks


def bench_cases():
    """Benchmark cases (``python -m torch_ops.bench --ops softmax,log_softmax,cross_entropy,linear_cross_entropy``).

    softmax / log_softmax on 32x64 (overhead), 4096x4096 and 16x65536; cross_entropy with
    N=4096, C=32000 (an LLM's vocabulary); linear_cross_entropy with N=4096, H=1024, V=32000
    against eager ``F.cross_entropy(F.linear(x, W), t)``.
    """
    import torch.nn.functional as F

    from .bench import Case

    def rows(m, k):
        def make(device, dtype):
            return (torch.randn(m, k, device=device, dtype=dtype, requires_grad=True),)

        return make

    def ce_inputs(n, c):
        def make(device, dtype):
            x = torch.randn(n, c, device=device, dtype=dtype, requires_grad=True)
            return (x, torch.randint(0, c, (n,), device=device))

        return make

    def lce_inputs(n, h, v):
        def make(device, dtype):
            x = torch.randn(n, h, device=device, dtype=dtype, requires_grad=True)
            w = (torch.randn(v, h, device=device, dtype=dtype) / h**0.5).requires_grad_(True)
            return (x, w, torch.randint(0, v, (n,), device=device))

        return make

    cases = []
    for name, ours, eager in (
        ("softmax", lambda x: softmax(x, -1), lambda x: F.softmax(x, -1)),
        ("log_softmax", lambda x: log_softmax(x, -1), lambda x: F.log_softmax(x, -1)),
    ):
        for case, size, (m, k) in (("small", "small", (32, 64)), ("large", "large", (4096, 4096)), ("wide", "large", (16, 65536))):
            cases.append(Case(name, case, f"x {m}x{k}", rows(m, k), ours=ours, eager=eager, size=size))
    cases.append(Case("cross_entropy", "small", "x 32x64", ce_inputs(32, 64), ours=cross_entropy, eager=F.cross_entropy))
    cases.append(Case("cross_entropy", "large", "x 4096x32000", ce_inputs(4096, 32000), ours=cross_entropy, eager=F.cross_entropy))
    cases.append(
        Case("linear_cross_entropy", "small", "x 32x64, W 128x64", lce_inputs(32, 64, 128), ours=linear_cross_entropy,
             eager=lambda x, w, t: F.cross_entropy(F.linear(x, w), t))  # fmt: skip
    )
    cases.append(
        Case(
            "linear_cross_entropy",
            "large",
            "x 4096x1024, W 32000x1024",
            lce_inputs(4096, 1024, 32000),
            ours=linear_cross_entropy,
            eager=lambda x, w, t: F.cross_entropy(F.linear(x, w), t),
            flops_fwd=2 * 4096 * 1024 * 32000,
            flops_bwd=4 * 4096 * 1024 * 32000,
        )
    )
    return cases
