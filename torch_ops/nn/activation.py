"""Activation modules: drop-ins for torch.nn's (subclasses, so the constructor arguments,
repr, state_dict and ``isinstance`` checks are theirs) and the gated units SwiGLU and GEGLU."""

from torch import Tensor, nn

from .. import activation as A


class ReLU(nn.ReLU):
    """Drop-in for ``torch.nn.ReLU(inplace=False)`` running torch_ops kernels."""

    def forward(self, input: Tensor) -> Tensor:
        return A.relu(input, inplace=self.inplace)


class LeakyReLU(nn.LeakyReLU):
    """Drop-in for ``torch.nn.LeakyReLU(negative_slope=0.01, inplace=False)``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.leaky_relu(input, self.negative_slope, self.inplace)


class GELU(nn.GELU):
    """Drop-in for ``torch.nn.GELU(approximate='none')``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.gelu(input, approximate=self.approximate)


class SiLU(nn.SiLU):
    """Drop-in for ``torch.nn.SiLU(inplace=False)``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.silu(input, inplace=self.inplace)


class Sigmoid(nn.Sigmoid):
    """Drop-in for ``torch.nn.Sigmoid()``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.sigmoid(input)


class Tanh(nn.Tanh):
    """Drop-in for ``torch.nn.Tanh()``."""

    def forward(self, input: Tensor) -> Tensor:
        return A.tanh(input)


class GLU(nn.GLU):
    """Drop-in for ``torch.nn.GLU(dim=-1)``: a * sigmoid(b), a, b = input.chunk(2, dim)."""

    def forward(self, input: Tensor) -> Tensor:
        return A.glu(input, self.dim)


class SwiGLU(nn.Module):
    """SwiGLU: silu(a) * b, where a, b = input.chunk(2, dim) (LLaMA-style MLPs).

    Typically after a Linear that projects to 2 * hidden features. No parameters.
    """

    __constants__ = ["dim"]
    dim: int

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return A.swiglu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class GEGLU(nn.Module):
    """GEGLU: gelu(a, approximate) * b, where a, b = input.chunk(2, dim) (T5-style MLPs)."""

    __constants__ = ["dim", "approximate"]
    dim: int
    approximate: str

    def __init__(self, dim: int = -1, approximate: str = "none") -> None:
        super().__init__()
        self.dim = dim
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return A.geglu(input, self.dim, self.approximate)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, approximate={self.approximate!r}"
