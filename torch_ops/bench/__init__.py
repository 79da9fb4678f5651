"""The benchmark suite: ``python -m torch_ops.bench --help``.

Each family declares its cases next to its op, as ``bench_cases()`` at the end of
``torch_ops/<family>.py`` returning a list of :class:`Case` (see ``case.py``), and is
listed in ``FAMILIES`` below; the suite imports those modules only when it runs.

For every case (and dtype) it times forward and forward+backward of torch_ops, of the
PyTorch eager reference and, for fused ops, of ``torch.compile`` of that reference, all
in the same run, and reports medians, speed-ups, roofline fractions (of a copy bandwidth
and of a ``torch.mm`` measured in the same run) and the peak memory of the large cases.
Layout: ``case.py`` (Case), ``discover.py``, ``timing.py`` (CPU/CUDA timers, references),
``memory.py`` (+ ``_memworker.py``), ``report.py`` (markdown, JSON, PNG), ``runner.py``
(the run and the command line).
"""

# The families whose torch_ops.<family> module defines bench_cases(); add yours here.
FAMILIES = ["linear", "activation", "fused", "norm", "softmax", "attention"]

from .case import Case  # noqa: E402
from .discover import discover  # noqa: E402
from .runner import main, run  # noqa: E402

__all__ = ["FAMILIES", "Case", "discover", "run", "main"]
