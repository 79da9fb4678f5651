"""Softmax-family modules: drop-ins for torch.nn's Softmax, LogSoftmax and CrossEntropyLoss
(subclasses: their constructor arguments, repr, buffers and state_dict), and
LinearCrossEntropyLoss, the loss layer of a language model that never holds the logits."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import softmax as S


class Softmax(nn.Softmax):
    """Drop-in for ``torch.nn.Softmax(dim=None)``."""

    def forward(self, input: Tensor) -> Tensor:
        return S.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(nn.LogSoftmax):
    """Drop-in for ``torch.nn.LogSoftmax(dim=None)``."""

    def forward(self, input: Tensor) -> Tensor:
        return S.log_softmax(input, self.dim, _stacklevel=5)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Drop-in for ``torch.nn.CrossEntropyLoss(weight=None, size_average=None,
    ignore_index=-100, reduce=None, reduction='mean', label_smoothing=0.0)``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return S.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class LinearCrossEntropyLoss(nn.Module):
    """``cross_entropy(linear(input, weight, bias), target)`` as a module that owns the
    projection (an LM head): ``LinearCrossEntropyLoss(in_features, num_classes, bias=False)``.
    Its ``weight`` (num_classes, in_features) and ``bias`` are initialised as
    ``torch.nn.Linear``'s, so a model's head weights load into it; the (N, num_classes)
    logits are never held (see ``torch_ops.linear_cross_entropy``)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bias: bool = False,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size
        self.weight = nn.Parameter(torch.empty((num_classes, in_features), **factory))
        self.bias = nn.Parameter(torch.empty(num_classes, **factory)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return S.linear_cross_entropy(
            input,
            self.weight,
            target,
            self.bias,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias is not None}, "
            f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}"
        )
