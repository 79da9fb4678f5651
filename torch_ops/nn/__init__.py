"""Drop-in modules and ``convert()``."""

from .activation import GEGLU, GELU, GLU, LeakyReLU, ReLU, Sigmoid, SiLU, SwiGLU, Tanh
from .convert import convert
from .linear import Linear
from .norm import LayerNorm, RMSNorm

__all__ = ["Linear", "ReLU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "GLU", "SwiGLU", "GEGLU", "LayerNorm", "RMSNorm", "convert"]
