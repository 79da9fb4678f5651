"""Drop-in modules and ``convert()``."""

from .activation import GEGLU, GELU, GLU, LeakyReLU, ReLU, Sigmoid, SiLU, SwiGLU, Tanh
from .convert import convert
from .fused import FusedLinear
from .linear import Linear
from .softmax import CrossEntropyLoss, LinearCrossEntropyLoss, LogSoftmax, Softmax

__all__ = ["Linear", "FusedLinear", "ReLU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "GLU", "SwiGLU", "GEGLU", "Softmax", "LogSoftmax",
           "CrossEntropyLoss", "LinearCrossEntropyLoss", "convert"]
