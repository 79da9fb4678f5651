"""A fresh process that measures the CPU peak memory of one case and implementation.

Started by ``torch_ops.bench.memory.cpu_peak_mib_many``; prints one JSON line.
"""

import argparse
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--module", required=True)
    p.add_argument("--op", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--impl", required=True)
    p.add_argument("--dtype", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--compile-backend", default="inductor")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from .discover import cases_of_module
    from .memory import cpu_peak_mib_here

    case = next(c for c in cases_of_module(a.module) if c.op == a.op and c.name == a.case)
    print(json.dumps(cpu_peak_mib_here(case, a.impl, getattr(torch, a.dtype), a.compile_backend)))


if __name__ == "__main__":
    main()
