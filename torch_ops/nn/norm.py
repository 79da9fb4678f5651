"""Normalization modules: drop-ins for torch.nn.LayerNorm and torch.nn.RMSNorm (subclasses,
so the constructor arguments, parameters, initialisation, repr, state_dict and
``isinstance`` checks are theirs)."""

from torch import Tensor, nn

from .. import norm as N


class LayerNorm(nn.LayerNorm):
    """Drop-in for ``torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True,
    bias=True, device=None, dtype=None)`` running torch_ops kernels."""

    def forward(self, input: Tensor) -> Tensor:
        return N.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.RMSNorm):
    """Drop-in for ``torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True,
    device=None, dtype=None)`` running torch_ops kernels."""

    def forward(self, input: Tensor) -> Tensor:
        return N.rms_norm(input, self.normalized_shape, self.weight, self.eps)
