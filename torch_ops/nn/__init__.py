"""Drop-in modules and ``convert(model)``."""

from .convert import convert
from .linear import Linear

__all__ = ["Linear", "convert"]
