"""Choosing the entry into the dispatcher for an eager call.

Both entries end in the same registered kernels (autograd included):

* ``torch.ops.torch_ops.<op>``: what torch.compile traces, and what honours
  ``__torch_function__`` overrides and torch-function modes;
* ``torch_ops._C.<op>``: a pybind11 binding that calls the dispatcher through a cached
  typed handle, skipping the schema-driven argument parsing of torch.ops (a few µs).

The functional ops take the direct binding only when nothing Python-level needs to see
the call.
"""

import torch

_has_torch_function = torch._C._has_torch_function
_is_compiling = torch.compiler.is_compiling


def use_torch_ops(args: tuple) -> bool:
    """True when the call must go through torch.ops: compiling, or an override/mode active."""
    return _is_compiling() or _has_torch_function(args)
