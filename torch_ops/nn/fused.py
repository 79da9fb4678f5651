from __future__ import annotations

from typing import Optional

from torch import Tensor

from ..fused import _check_activation, fused_linear
from .linear import Linear


class FusedLinear(Linear):
    """``act(Linear(x))`` in one op (``torch_ops.fused_linear``).

    ``FusedLinear(in_features, out_features, bias=True, activation='gelu', device=None,
    dtype=None)``; activation None, ``'relu'``, ``'gelu'``, ``'gelu_tanh'`` or ``'silu'``.
    A subclass of ``torch.nn.Linear`` (through ``torch_ops.nn.Linear``): the same
    initialisation, parameters and state_dict keys, so a Linear's state_dict loads into it
    and back.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: Optional[str] = "gelu",
                 device=None, dtype=None) -> None:  # fmt: skip
        _check_activation(activation, "nn.FusedLinear")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, input: Tensor) -> Tensor:
        return fused_linear(input, self.weight, self.bias, self.activation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"
