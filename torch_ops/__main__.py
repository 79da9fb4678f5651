"""``python -m torch_ops``: what was built, then per op its error against PyTorch, its
gradcheck/gradgradcheck result and its time against PyTorch eager on this device.

The ops and their inputs are the benchmark cases each family declares
(``bench_cases()`` in ``torch_ops/<family>.py``): the "small" case in float64 for the
derivative checks, the "medium" case in float32 for the error and the timings.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.benchmark import Timer

import torch_ops
from torch_ops.bench import discover


def _timed(fn, min_run_time: float) -> float:
    return Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def _fwd_bwd(f, inputs):
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    out = f(*inputs)
    grad = torch.randn_like(out)
    return lambda: torch.autograd.grad(f(*inputs), diff, grad)


def _sync(device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torch_ops", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--time", type=float, default=0.3, help="seconds of timing per measurement")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    info = torch_ops.build_info()
    print(f"torch_ops {info['version']} built against torch {info['built_with_torch']} (running {info['torch']})")
    cuda = f"yes, CUDA {info['cuda_version']}, archs {';'.join(info['cuda_archs'])}" if info["cuda_kernels"] else "no"
    print(f"  CPU kernels: yes (running the {info['cpu_isa']} variant)   CUDA kernels: {cuda}")
    print(f"  device: {device}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else
                                    f", {torch.cuda.get_device_name(device)}"))
    print()
    header = f"{'op':<24}{'max |err| f32':>15}{'gradcheck':>11}{'gradgrad':>10}{'fwd':>10}{'eager':>10}{'x':>7}" \
             f"{'fwd+bwd':>10}{'eager':>10}{'x':>7}"
    print(header)
    print("-" * len(header))
    ok = True
    cases = {}
    for c in discover():
        cases.setdefault(c.op, {})[c.name] = c
    sync = _sync(device)
    for op, by_name in cases.items():
        small, medium = by_name.get("small"), by_name.get("medium") or by_name.get("small")
        if small is None:  # every op declares a small case; the demo checks and times only those
            print(f"{op:<24}  (no small benchmark case: skipped)")
            continue
        torch.manual_seed(0)
        x64 = small.make_inputs(device, torch.float64)
        gc = torch.autograd.gradcheck(small.ours, x64, fast_mode=True, raise_exception=False)
        ggc = torch.autograd.gradgradcheck(small.ours, x64, fast_mode=True, raise_exception=False)
        x32 = medium.make_inputs(device, torch.float32)
        with torch.no_grad():
            err = (medium.ours(*x32) - medium.eager(*x32)).abs().max().item()
        times = []
        for f in (medium.ours, medium.eager):
            times.append(_timed(lambda: (f(*x32), sync()), args.time))
        for f in (medium.ours, medium.eager):
            step = _fwd_bwd(f, x32)
            times.append(_timed(lambda: (step(), sync()), args.time))
        ok &= gc and ggc
        us = [t * 1e6 for t in times]
        print(f"{op:<24}{err:>15.2e}{'pass' if gc else 'FAIL':>11}{'pass' if ggc else 'FAIL':>10}"
              f"{us[0]:>8.1f}us{us[1]:>8.1f}us{us[1] / us[0]:>6.2f}x{us[2]:>8.1f}us{us[3]:>8.1f}us{us[3] / us[2]:>6.2f}x")
    print()
    print(f"times: {medium.shape} float32 (medians); x = eager time / torch_ops time, > 1 is faster.")
    print("Full benchmark: python -m torch_ops.bench --help")
    return 0 if ok else 1


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    raise SystemExit(rc)
