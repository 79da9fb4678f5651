"""``Case``: one benchmark case of one op, declared next to the op.

A family declares its cases at the end of ``torch_ops/<family>.py``::

    def bench_cases():
        from torch_ops.bench import Case

        def inputs(m, k):
            def make(device, dtype):
                x = torch.randn(m, k, device=device, dtype=dtype, requires_grad=True)
                return (x,)
            return make

        return [
            Case("gelu", "small", "x 32x64", inputs(32, 64), ours=gelu, eager=F.gelu),
            Case("gelu", "large", "x 8192x4096", inputs(8192, 4096), ours=gelu, eager=F.gelu),
        ]

and adds the family's name to ``FAMILIES`` in ``torch_ops/bench/__init__.py``.

What the suite does with a case, per dtype:

* ``make_inputs(device, dtype)`` returns the positional arguments of ``ours`` and
  ``eager`` (tensors and plain values). Tensors with ``requires_grad=True`` are the ones
  that forward+backward differentiates with respect to. It is called once on CPU and
  several times on CUDA (input sets rotated so that the L2 cache does not serve them).
* ``ours(*inputs)`` and ``eager(*inputs)`` each return one Tensor (wrap an op that
  returns several). ``eager`` is the PyTorch reference the op replaces: the eager op or
  the eager composition. With ``compile=True`` (fused ops) ``torch.compile(eager)`` is
  timed as a third implementation.
* forward is ``f(*inputs)`` (inputs requiring grad, as in training); forward+backward is
  ``torch.autograd.grad(f(*inputs), grad_inputs, grad_output)`` with a fixed random
  ``grad_output`` (the same work as ``.backward(grad)``, without accumulating ``.grad``).
* roofline: ``bytes_fwd`` / ``bytes_fwdbwd`` are the bytes that must move. Left ``None``,
  they are counted from the tensors: forward reads each input once and writes the output
  once; forward+backward also reads ``grad_output`` and writes one gradient per
  differentiated input. ``flops_fwd`` / ``flops_bwd`` are given for GEMM ops only; their
  FLOP/s are then compared with a ``torch.mm`` measured in the same run.
* ``size`` is ``"small"`` (overhead-bound), ``"medium"`` or ``"large"`` (bandwidth- or
  FLOP-bound); it defaults to ``name`` when that is one of the three. ``--quick`` runs the
  small and large cases only; peak memory is measured for the large ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

SIZES = ("small", "medium", "large")
QUICK_SIZES = ("small", "large")


@dataclass
class Case:
    op: str
    """The op's public name, e.g. ``"linear"`` (what ``--ops`` selects)."""
    name: str
    """The case's name within the op, e.g. ``"small"``; unique per op."""
    shape: str
    """Human-readable shapes for the table, e.g. ``"x 32x64, W 64x64, b 64"``."""
    make_inputs: Callable[[torch.device, torch.dtype], tuple]
    ours: Callable[..., Tensor]
    eager: Callable[..., Tensor]
    compile: bool = False
    """Also time ``torch.compile(eager)`` (for fused ops: the composition it replaces)."""
    flops_fwd: Optional[int] = None
    flops_bwd: Optional[int] = None
    bytes_fwd: Optional[int] = None
    bytes_fwdbwd: Optional[int] = None
    size: Optional[str] = None
    dtypes: Optional[Sequence[torch.dtype]] = None
    """The dtypes the case runs in (``None``: any that is asked for)."""
    family: str = field(default="", compare=False)
    """The module that declared the case; filled in by discovery."""

    def __post_init__(self):
        if self.size is None:
            self.size = self.name if self.name in SIZES else "medium"
        if self.size not in SIZES:
            raise ValueError(f"Case {self.op}/{self.name}: size must be one of {SIZES}, got {self.size!r}")

    @property
    def key(self) -> str:
        return f"{self.op}/{self.name}"

    @property
    def flops_fwdbwd(self) -> Optional[int]:
        if self.flops_fwd is None or self.flops_bwd is None:
            return None
        return self.flops_fwd + self.flops_bwd

    def supports(self, dtype: torch.dtype) -> bool:
        return self.dtypes is None or dtype in tuple(self.dtypes)


def tensor_bytes(values) -> int:
    """Total bytes of the tensors among ``values`` (other values count zero)."""
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, Tensor))


def grad_inputs(inputs: tuple) -> list:
    """The inputs that forward+backward differentiates with respect to."""
    return [v for v in inputs if isinstance(v, Tensor) and v.requires_grad]


MODES = ("fwd", "fwdbwd")
MODE_LABELS = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}


class InputSet:
    """One set of inputs of a case: the arguments, the tensors to differentiate, grad_output."""

    def __init__(self, case: Case, device: torch.device, dtype: torch.dtype):
        self.inputs = tuple(case.make_inputs(device, dtype))
        self.grad_inputs = grad_inputs(self.inputs)
        with torch.no_grad():
            out = case.eager(*self.inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"Case {case.key}: eager must return one Tensor, got {type(out).__name__}")
        self.output_bytes = out.numel() * out.element_size()
        self.grad_output = torch.randn_like(out)
        self.nbytes = tensor_bytes(self.inputs) + tensor_bytes([self.grad_output])

    def call(self, fn: Callable[..., Tensor], mode: str) -> Callable[[], object]:
        """A zero-argument callable running ``fn`` on this set: forward or forward+backward."""
        inputs = self.inputs
        if mode == "fwd":
            return lambda: fn(*inputs)
        wrt, grad = self.grad_inputs, self.grad_output
        return lambda: torch.autograd.grad(fn(*inputs), wrt, grad)


def compiled(eager: Callable[..., Tensor], backend: str = "inductor") -> Callable[..., Tensor]:
    """``torch.compile`` of the eager reference (static shapes; compiles at the first call).

    Resets dynamo first: one compiled reference is in use at a time, and without the reset
    the cases of a long run would pile up recompilations of ``composition`` until dynamo's
    recompile limit made it fall back to eager without a word.
    """
    torch._dynamo.reset()

    def composition(*args):
        return eager(*args)

    return torch.compile(composition, backend=backend, dynamic=False)
