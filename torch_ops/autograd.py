"""The torch.autograd.Function classes of every op, for users who build their own."""

from .linear import LinearFunction

__all__ = ["LinearFunction"]
