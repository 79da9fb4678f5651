"""``convert(model)``: swap supported torch.nn modules for torch_ops ones, in place."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from . import activation as act
from .linear import Linear
from .norm import LayerNorm, RMSNorm

# torch.nn class -> torch_ops replacement. Later op families add theirs here.
_REPLACEMENTS: dict[type, type] = {
    nn.Linear: Linear,
    nn.ReLU: act.ReLU,
    nn.LeakyReLU: act.LeakyReLU,
    nn.GELU: act.GELU,
    nn.SiLU: act.SiLU,
    nn.Sigmoid: act.Sigmoid,
    nn.Tanh: act.Tanh,
    nn.GLU: act.GLU,
    nn.LayerNorm: LayerNorm,
    nn.RMSNorm: RMSNorm,
}
_converted_subclasses: dict[type, type] = {}


def _replacement_class(cls: type) -> type | None:
    """The class to give a module of type ``cls``, or None when it is not safe to convert.

    Exact torch.nn classes map to their torch_ops drop-in. A subclass is converted only
    when it keeps the base class's ``forward`` (e.g. MultiheadAttention's out_proj, or a
    parametrized Linear): it becomes a subclass of itself whose forward is torch_ops'.
    Lazy modules, torch_ops modules and subclasses with their own forward are left alone.
    """
    if cls in _REPLACEMENTS:
        return _REPLACEMENTS[cls]
    if issubclass(cls, tuple(_REPLACEMENTS.values())) or issubclass(cls, LazyModuleMixin):
        return None
    for base, ours in _REPLACEMENTS.items():
        if issubclass(cls, base) and cls.forward is base.forward:
            if cls not in _converted_subclasses:
                _converted_subclasses[cls] = type(cls.__name__, (cls,), {"forward": ours.forward, "__module__": cls.__module__})
            return _converted_subclasses[cls]
    return None


def convert(model: nn.Module, *, report: bool = False):
    """Replace every supported module in ``model`` (itself included) by its torch_ops drop-in.

    The modules keep their parameters (the same tensors), buffers, hooks, device, dtype
    and training mode: only their class changes. Returns ``model``, or
    ``(model, replaced)`` with ``report=True``, where ``replaced`` lists
    ``(qualified_name, old_class_name)`` of each module converted.
    """
    replaced = []
    for name, module in model.named_modules():
        new_cls = _replacement_class(type(module))
        if new_cls is not None:
            replaced.append((name, type(module).__qualname__))
            module.__class__ = new_cls
    return (model, replaced) if report else model
