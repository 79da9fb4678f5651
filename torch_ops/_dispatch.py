"""Choosing the entry into the dispatcher for an eager call.

Both entries end in the same registered kernels (autograd included):

* ``torch.ops.torch_ops.<op>``: what torch.compile traces;
* ``torch_ops._C.<op>``: a pybind11 binding that calls the dispatcher through a cached
  typed handle, skipping the schema-driven argument parsing of torch.ops (a few µs).

A functional op first hands the call to ``__torch_function__`` overrides and modes
(``handle_torch_function``, as torch.nn.functional does, so FX tracing and tensor
subclasses see ``torch_ops.<op>`` itself), then takes torch.ops while compiling and the
direct binding otherwise.
"""

import torch

_has_torch_function = torch._C._has_torch_function
_is_compiling = torch.compiler.is_compiling
