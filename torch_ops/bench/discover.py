"""Finding the cases: ``bench_cases()`` of each family module named in ``FAMILIES``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Iterable, List, Optional, Sequence

from .case import QUICK_SIZES, Case


def module_name(family: str) -> str:
    """``"linear"`` -> ``"torch_ops.linear"``; other module names and ``.py`` paths are kept."""
    if family.endswith(".py"):
        return os.path.abspath(family)
    if "." not in family and importlib.util.find_spec(f"torch_ops.{family}") is not None:
        return f"torch_ops.{family}"
    return family


def _import(module: str):
    if not module.endswith(".py"):
        return importlib.import_module(module)
    name = "_torch_ops_bench_" + "".join(ch if ch.isalnum() else "_" for ch in module)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def cases_of_module(module: str) -> List[Case]:
    """The cases of a module (a name such as ``torch_ops.linear``, or a ``.py`` path)."""
    fn = getattr(_import(module), "bench_cases", None)
    if fn is None:
        print(f"torch_ops.bench: {module} has no bench_cases(); skipped", file=sys.stderr)
        return []
    cases = list(fn())
    for c in cases:
        if not isinstance(c, Case):
            raise TypeError(f"{module}.bench_cases() must return Case objects, got {type(c).__name__}")
        c.family = module
    keys = [c.key for c in cases]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f"{module}.bench_cases(): duplicate cases {sorted(dup)}")
    return cases


def family_label(module: str) -> str:
    """``torch_ops.linear`` -> ``linear``; ``/x/test_bench.py`` -> ``test_bench``."""
    return os.path.splitext(os.path.basename(module))[0] if module.endswith(".py") else module.rsplit(".", 1)[-1]


def discover(
    families: Optional[Iterable[str]] = None,
    ops: Optional[Sequence[str]] = None,
    names: Optional[Sequence[str]] = None,
    quick: bool = False,
) -> List[Case]:
    """The cases of ``families`` (default ``FAMILIES``), filtered.

    ops: op or family names to keep (``--ops``); names: case names to keep (``--cases``);
    quick: keep the small and large cases only.
    """
    if families is None:
        from . import FAMILIES as families
    cases = []
    for fam in families:
        mod = module_name(fam)
        for c in cases_of_module(mod):
            c_fam = family_label(mod)
            if ops and c.op not in ops and c_fam not in ops and fam not in ops:
                continue
            if names and c.name not in names:
                continue
            if quick and not names and c.size not in QUICK_SIZES:
                continue
            cases.append(c)
    return cases
