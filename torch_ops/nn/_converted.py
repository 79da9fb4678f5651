"""Where pickle finds the classes that ``convert()`` makes for torch.nn subclasses.

``convert()`` gives a subclass that keeps its base's forward (MultiheadAttention's
``out_proj``, a ``NonDynamicallyQuantizableLinear``) a class of its own: a subclass of it
whose forward is torch_ops'. That class is made at run time; its ``__qualname__`` names the
original class (``torch$nn$modules$linear$$NonDynamicallyQuantizableLinear``: module
dots as ``$``, ``$$`` before the qualified name) and this module hands it out by that name,
making it again after a restart. So ``torch.save(model)`` / ``pickle`` of a converted model
work, and loading gives the converted classes back.
"""

from __future__ import annotations

import importlib


def qualname_for(cls: type) -> str:
    return cls.__module__.replace(".", "$") + "$$" + cls.__qualname__.replace(".", "$")


def __getattr__(name: str):
    module, sep, qual = name.partition("$$")
    if not sep:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    obj = importlib.import_module(module.replace("$", "."))
    for part in qual.split("$"):
        obj = getattr(obj, part)
    from .convert import _replacement_class

    made = _replacement_class(obj)
    if made is None or made is obj:
        raise AttributeError(f"torch_ops.nn: {obj!r} is not a class that convert() replaces")
    return made
