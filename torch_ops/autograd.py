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
from .linear import LinearFunction
from .norm import AddLayerNormFunction, AddRMSNormFunction, LayerNormFunction, RMSNormFunction

__all__ = [
    "LinearFunction",
    "ReLUFunction",
    "LeakyReLUFunction",
    "GELUFunction",
    "SiLUFunction",
    "SigmoidFunction",
    "TanhFunction",
    "GLUFunction",
    "SwiGLUFunction",
    "GEGLUFunction",
    "LayerNormFunction",
    "RMSNormFunction",
    "AddLayerNormFunction",
    "AddRMSNormFunction",
]
