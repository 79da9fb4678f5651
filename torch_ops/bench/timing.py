"""Timers and the roofline references (copy bandwidth, ``torch.mm``), measured per run.

A timer measures a list of zero-argument callables, one per input set, and returns
per-call times in seconds (one sample per block of calls); the caller takes the median.

* CPU: ``torch.utils.benchmark.Timer(...).blocked_autorange`` with ``num_threads`` set to
  the thread count that the report states. One input set.
* CUDA: CUDA events around blocks of calls after warm-up, rotating over enough input
  sets that their total exceeds twice the L2 cache, so a set is evicted before it is used
  again and the timings are of memory, not of L2.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, List, Sequence

import torch
import torch.utils.benchmark as benchmark


class CpuTimer:
    device = torch.device("cpu")

    def __init__(self, threads: int):
        self.threads = threads
        self.description = f"torch.utils.benchmark.Timer.blocked_autorange, {threads} thread(s)"

    def num_sets(self, set_bytes: int) -> int:
        return 1

    def warmup(self, fns: Sequence[Callable], calls: int = 3, max_time: float = 1.0) -> None:
        """``calls`` calls, or fewer (at least one) when they are slow."""
        start = time.perf_counter()
        for _ in range(calls):
            fns[0]()
            if time.perf_counter() - start > max_time:
                break

    def measure(self, fns: Sequence[Callable], min_time: float) -> List[float]:
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fns[0]}, num_threads=self.threads)
        return list(timer.blocked_autorange(min_run_time=min_time).times)

    def synchronize(self) -> None:
        pass


class CudaTimer:
    def __init__(self, device: torch.device, threads: int):
        self.device = device
        self.threads = threads
        props = torch.cuda.get_device_properties(device)
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 64 * 2**20)
        self.description = (
            f"CUDA events after warm-up, input sets rotated over > 2x L2 ({self.l2_bytes / 2**20:.0f} MiB)"
        )
        self._next = 0  # the rotation goes on across calls, so consecutive calls never share a set

    def _call(self, fns: Sequence[Callable]) -> None:
        fns[self._next % len(fns)]()
        self._next += 1

    def num_sets(self, set_bytes: int, max_sets: int = 4096) -> int:
        # A set is used again after all the others have passed through: their total must
        # exceed the L2 (with a factor 2 for non-LRU replacement and the op's own traffic).
        return max(1, min(max_sets, 1 + math.ceil(2 * self.l2_bytes / max(set_bytes, 1))))

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def warmup(self, fns: Sequence[Callable], calls: int = 10) -> None:
        for _ in range(max(calls, len(fns))):
            self._call(fns)
        self.synchronize()

    def measure(self, fns: Sequence[Callable], min_time: float, blocks: int = 10) -> List[float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def block(iters: int) -> float:
            start.record()
            for _ in range(iters):
                self._call(fns)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters

        per_call = block(5)
        iters = max(1, min(100_000, int(min_time / blocks / max(per_call, 1e-7))))
        return [block(iters) for _ in range(blocks)]


def make_timer(device: torch.device, threads: int):
    return CudaTimer(device, threads) if device.type == "cuda" else CpuTimer(threads)


def summarize(samples: Sequence[float]) -> dict:
    """Median and interquartile range of per-call times (seconds)."""
    qs = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "iqr": qs[2] - qs[0], "samples": len(samples)}


def copy_bandwidth(timer, min_time: float) -> dict:
    """Bytes per second of ``dst.copy_(src)`` on buffers far larger than the caches."""
    if timer.device.type == "cuda":
        nbytes = max(256 * 2**20, 8 * timer.l2_bytes)
    else:
        nbytes = 128 * 2**20
    src = torch.ones(nbytes // 4, device=timer.device)
    dst = torch.empty_like(src)
    fns = [lambda: dst.copy_(src)]
    timer.warmup(fns)
    t = summarize(timer.measure(fns, min_time))["median"]
    moved = 2 * src.numel() * src.element_size()
    return {"bytes": moved, "buffer_mib": nbytes / 2**20, "time_s": t, "gbps": moved / t / 1e9}


def mm_throughput(timer, dtype: torch.dtype, min_time: float) -> dict:
    """FLOP/s of a square ``torch.mm`` in ``dtype``: the GEMM ops' reference.

    n = 8192 on CUDA. On CPU n = 2048, or less where a call would take over 2 seconds (as
    predicted from n = 512): some CPUs have no fast GEMM for some dtypes (bfloat16 without
    native support: a 2048 mm takes a minute), and the reference must not dominate the run.
    """
    if timer.device.type == "cuda":
        n = 8192
    else:
        a = torch.randn(512, 512, dtype=dtype)
        t512 = []
        for _ in range(2):  # the first call may pay a one-time set-up
            start = time.perf_counter()
            torch.mm(a, a)
            t512.append(time.perf_counter() - start)
        n = next((n for n in (2048, 1024, 512) if min(t512) * (n / 512) ** 3 <= 2.0), 256)
    a = torch.randn(n, n, device=timer.device, dtype=dtype)
    b = torch.randn(n, n, device=timer.device, dtype=dtype)
    fns = [lambda: torch.mm(a, b)]
    timer.warmup(fns, calls=2)
    t = summarize(timer.measure(fns, min_time))["median"]
    return {"n": n, "flops": 2 * n**3, "time_s": t, "gflops": 2 * n**3 / t / 1e9}
