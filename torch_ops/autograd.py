"""The torch.autograd.Function classes of every op, for users who build their own."""

from .activation import (
    GEGLUFunction,
    GELUFunction,
    GLUFunction,
    LeakyReLUFunction,
    ReLUFunction,
    SigmoidFunction,
    SiLUFunction,
    SwiGLUFunction,
    TanhFunction,
)
from .attention import AttentionFunction
from .fused import FusedLinearFunction
from .linear import LinearFunction
from .softmax import CrossEntropyFunction, LinearCrossEntropyFunction, LogSoftmaxFunction, SoftmaxFunction
from .norm import AddLayerNormFunction, AddRMSNormFunction, LayerNormFunction, RMSNormFunction

__all__ = [
    "LinearFunction",
    "FusedLinearFunction",
    "ReLUFunction",
    "LeakyReLUFunction",
    "GELUFunction",
    "SiLUFunction",
    "SigmoidFunction",
    "TanhFunction",
    "GLUFunction",
    "SwiGLUFunction",
    "GEGLUFunction",
    "SoftmaxFunction",
    "LogSoftmaxFunction",
    "CrossEntropyFunction",
    "LinearCrossEntropyFunction",
    "LayerNormFunction",
    "RMSNormFunction",
    "AddLayerNormFunction",
    "AddRMSNormFunction",
    "AttentionFunction",
]
