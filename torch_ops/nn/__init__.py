"""Drop-in modules and ``convert()``."""

from .activation import GEGLU, GELU, GLU, LeakyReLU, ReLU, Sigmoid, SiLU, SwiGLU, Tanh
from .attention import MultiheadAttention
from .convert import convert
from .fused import FusedLinear
from .linear import Linear
from .norm import LayerNorm, RMSNorm
from .softmax import CrossEntropyLoss, LinearCrossEntropyLoss, LogSoftmax, Softmax

__all__ = ["Linear", "FusedLinear", "ReLU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "GLU", "SwiGLU", "GEGLU", "LayerNorm", "RMSNorm",
           "Softmax", "LogSoftmax", "CrossEntropyLoss", "LinearCrossEntropyLoss", "MultiheadAttention", "convert"]
