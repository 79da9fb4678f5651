"""``convert(model)``: swap supported torch.nn modules for torch_ops ones, in place."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from . import _converted
from . import activation as act
from . import softmax as sm
from .attention import MultiheadAttention
from .fused import FusedLinear
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
    nn.Softmax: sm.Softmax,
    nn.LogSoftmax: sm.LogSoftmax,
    nn.CrossEntropyLoss: sm.CrossEntropyLoss,
    nn.LayerNorm: LayerNorm,
    nn.RMSNorm: RMSNorm,
    nn.MultiheadAttention: MultiheadAttention,
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
                # named so that pickle finds it again (torch_ops/nn/_converted.py)
                attrs = {"forward": ours.forward, "__module__": _converted.__name__, "__qualname__": _converted.qualname_for(cls)}
                _converted_subclasses[cls] = type(cls.__name__, (cls,), attrs)
            return _converted_subclasses[cls]
    return None


def _fusable_activation(module: nn.Module) -> str | None:
    """The fused_linear activation that ``module`` computes, or None if it is not one."""
    cls = type(module)
    if cls in (nn.ReLU, act.ReLU):
        return "relu"
    if cls in (nn.SiLU, act.SiLU):
        return "silu"
    if cls in (nn.GELU, act.GELU):
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    return None


def _fuse(model: nn.Module, replaced: list) -> None:
    """In every nn.Sequential: Linear, then ReLU / GELU / SiLU -> FusedLinear, then Identity."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        keys = list(module._modules.keys())
        for first, second in zip(keys, keys[1:]):
            lin, nxt = module._modules[first], module._modules[second]
            if lin is None or nxt is None or type(lin) not in (nn.Linear, Linear):
                continue
            activation = _fusable_activation(nxt)
            if activation is None:
                continue
            prefix = f"{name}." if name else ""
            replaced.append((prefix + first, type(lin).__qualname__))
            replaced.append((prefix + second, type(nxt).__qualname__))
            lin.__class__ = FusedLinear
            lin.activation = activation
            module._modules[second] = nn.Identity()


def convert(model: nn.Module, *, fuse: bool = False, report: bool = False):
    """Replace every supported module in ``model`` (itself included) by its torch_ops drop-in.

    The modules keep their parameters (the same tensors), buffers, hooks, device, dtype
    and training mode: only their class changes. With ``fuse=True``, first, inside each
    ``nn.Sequential``, a Linear immediately followed by a ReLU, GELU (either approximation)
    or SiLU becomes one ``FusedLinear`` (the Linear module itself, its state_dict keys kept)
    and the activation's slot an ``nn.Identity`` (hooks on that activation module go with
    it). Returns ``model``, or ``(model, replaced)`` with ``report=True``, where
    ``replaced`` lists ``(qualified_name, old_class_name)`` of each module converted.
    """
    replaced = []
    if fuse:
        _fuse(model, replaced)
    for name, module in model.named_modules():
        new_cls = _replacement_class(type(module))
        if new_cls is not None:
            replaced.append((name, type(module).__qualname__))
            module.__class__ = new_cls
    return (model, replaced) if report else model
