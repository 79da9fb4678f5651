"""torch_ops: hand-written CPU and CUDA kernels for PyTorch operators.

Every op is reachable four ways, all ending in the same kernels:

* dispatcher op:      ``torch.ops.torch_ops.linear(x, w, b)``
* functional:         ``torch_ops.linear(x, w, b)`` (same signature as ``torch.nn.functional``)
* autograd Function:  ``torch_ops.autograd.LinearFunction.apply(x, w, b)``
* modules:            ``torch_ops.nn.Linear``, ``torch_ops.nn.convert(model)``
"""

import torch

from . import _load

_C = _load.load_library()  # registers torch.ops.torch_ops.*

from . import autograd, nn  # noqa: E402
from ._build import VERSION as __version__  # noqa: E402
from .attention import scaled_dot_product_attention  # noqa: E402
from .activation import gelu, geglu, glu, leaky_relu, relu, sigmoid, silu, swiglu, tanh  # noqa: E402
from .fused import fused_linear  # noqa: E402
from .linear import linear  # noqa: E402
from .softmax import cross_entropy, linear_cross_entropy, log_softmax, softmax  # noqa: E402
from .norm import add_layer_norm, add_rms_norm, layer_norm, rms_norm  # noqa: E402


def build_info() -> dict:
    """What this torch_ops was built with: version, torch version, CPU/CUDA kernels, archs."""
    info = dict(_C.build_info())
    info["torch"] = torch.__version__
    info["cuda_available"] = torch.cuda.is_available()
    return info


def cpu_cache_bytes() -> int:
    """Bytes of freed large (>= 4 MiB) CPU outputs that torch_ops keeps for reuse.

    torch_ops allocates its big CPU outputs from a cache of freed blocks (like PyTorch's
    CUDA caching allocator), so a loop that produces the same large tensors every step
    does not pay the OS's page faults and page zeroing each time. The cache holds at most
    ``TORCH_OPS_CPU_CACHE_MIB`` MiB (default 256; 0 turns it off).
    """
    return int(_C.cpu_cache_bytes())


def empty_cpu_cache() -> None:
    """Return the cached blocks (see :func:`cpu_cache_bytes`) to the OS."""
    _C.empty_cpu_cache()


__all__ = [
    "linear",
    "fused_linear",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "glu",
    "swiglu",
    "geglu",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "linear_cross_entropy",
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "scaled_dot_product_attention",
    "autograd",
    "nn",
    "build_info",
    "cpu_cache_bytes",
    "empty_cpu_cache",
    "__version__",
]
