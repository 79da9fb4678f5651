"""Peak memory of one forward+backward, per implementation.

The figure is the memory used above what was allocated before the call (the inputs and
grad_output), up to the end of the call with its output and gradients still alive,
measured after one warm-up call (which compiles, for torch.compile).

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before the call; in this process.
* CPU: a fresh Python process per implementation (``python -m torch_ops.bench._memworker``)
  with glibc told to serve every allocation of 64 KiB or more with mmap
  (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident set at once. After
  the warm-up it empties torch_ops' CPU block cache (``torch_ops.empty_cpu_cache()``: the
  warm-up's freed outputs must leave the resident set too, or the call would reuse them
  unseen), resets the resident-set high-water mark (``/proc/self/clear_refs``), runs
  the call and reports VmHWM minus the VmRSS before the call. Where clear_refs cannot be
  written, it skips the warm-up (figures for torch.compile are then not available) and
  reports the rise of VmHWM over VmRSS, which is only valid when the call set a new peak.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import torch

from .case import Case, InputSet, compiled

CPU_METHOD = "peak RSS of a fresh process per implementation (VmHWM after reset minus VmRSS before the call)"
CUDA_METHOD = "torch.cuda.max_memory_allocated() minus memory_allocated() before the call"


def impl_fn(case: Case, impl: str, compile_backend: str) -> Callable:
    if impl == "ours":
        return case.ours
    if impl == "eager":
        return case.eager
    if impl == "compile":
        return compiled(case.eager, compile_backend)
    raise ValueError(f"unknown implementation {impl!r}")


def cuda_peak_mib(case: Case, impl: str, device: torch.device, dtype: torch.dtype, compile_backend: str) -> float:
    s = InputSet(case, device, dtype)
    f = s.call(impl_fn(case, impl, compile_backend), "fwdbwd")
    f()  # warm-up (and compilation)
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = f()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del result
    return peak / 2**20


def _worker_cmd(case: Case, impl: str, dtype: torch.dtype, threads: int, compile_backend: str) -> list:
    return [
        sys.executable, "-m", "torch_ops.bench._memworker",
        "--module", case.family, "--op", case.op, "--case", case.name, "--impl", impl,
        "--dtype", str(dtype).replace("torch.", ""), "--threads", str(threads),
        "--compile-backend", compile_backend,
    ]  # fmt: skip


def cpu_peak_mib_many(jobs, threads: int, compile_backend: str, on_done: Optional[Callable] = None) -> list:
    """Runs a fresh process for each (case, impl, dtype) in ``jobs``, a few at a time.

    Returns one dict per job: ``{"peak_mib": float | None, "error": str | None}``. The
    processes run concurrently: each measures only its own memory.
    """
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    lock = threading.Lock()

    def one(job):
        case, impl, dtype = job
        try:
            proc = subprocess.run(
                _worker_cmd(case, impl, dtype, threads, compile_backend),
                env=env, capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                return {"peak_mib": None, "error": f"worker exited {proc.returncode}: {tail}"}
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as e:  # noqa: BLE001 - reported, not raised
            return {"peak_mib": None, "error": f"{type(e).__name__}: {e}"}
        finally:
            if on_done is not None:
                with lock:
                    on_done(f"peak memory {case.key} {impl}")

    # torch.compile workers take longest (they compile): start them first.
    order = sorted(range(len(jobs)), key=lambda k: jobs[k][1] != "compile")
    out = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for k, res in zip(order, pool.map(one, [jobs[k] for k in order])):
            out[k] = res
    return out


# -- inside the worker process -------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_peak_mib_here(case: Case, impl: str, dtype: torch.dtype, compile_backend: str) -> dict:
    """The measurement itself, in the fresh worker process (see the module docstring)."""
    s = InputSet(case, torch.device("cpu"), dtype)
    f = s.call(impl_fn(case, impl, compile_backend), "fwdbwd")
    can_reset = _reset_peak()
    if can_reset:
        f()  # warm-up (and compilation)
    elif impl == "compile":
        return {"peak_mib": None, "error": "cannot reset the peak RSS (/proc/self/clear_refs) to exclude compilation"}
    gc.collect()
    import torch_ops

    torch_ops.empty_cpu_cache()
    _reset_peak()
    before, hwm_before = _status_kib("VmRSS"), _status_kib("VmHWM")
    result = f()
    hwm = _status_kib("VmHWM")
    del result
    if not can_reset and hwm <= hwm_before:
        return {"peak_mib": None, "error": "the call did not exceed the peak RSS of the imports"}
    return {"peak_mib": (hwm - before) / 1024, "error": None}
