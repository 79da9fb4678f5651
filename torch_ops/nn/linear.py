from torch import Tensor, nn

from ..linear import linear


class Linear(nn.Linear):
    """Drop-in for ``torch.nn.Linear`` running torch_ops kernels.

    A subclass of ``torch.nn.Linear``: the same constructor arguments (``device``,
    ``dtype`` included), parameter names, initialisation, state_dict and repr, so state
    dicts move both ways and ``isinstance(m, torch.nn.Linear)`` holds.
    """

    def forward(self, input: Tensor) -> Tensor:
        return linear(input, self.weight, self.bias)
