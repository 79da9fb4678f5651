"""Where the time of a small (overhead-bound) linear goes, layer by layer.

    python benchmarks/overhead.py [--threads 1] [--m 32 --k 64 --n 64]

Each row is one way of calling linear on the same tensors (weight and bias requiring
grad unless the row says no_grad); the median of several torch.utils.benchmark runs,
interleaved so that drift hits every row alike. The differences between rows are the
cost of each layer: the Python wrapper, the binding, autograd, and the kernel's own
bookkeeping above the GEMM (torch.addmm under no_grad is the floor).
"""

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

import torch_ops

ROWS = [
    ("F.linear", "F.linear(x, w, b)", False),
    ("torch_ops.linear", "torch_ops.linear(x, w, b)", False),
    ("torch_ops._C.linear (binding)", "C.linear(x, w, b)", False),
    ("torch.ops.torch_ops.linear.default", "op(x, w, b)", False),
    ("torch.ops.torch_ops.linear", "torch.ops.torch_ops.linear(x, w, b)", False),
    ("no_grad F.linear", "F.linear(x, w, b)", True),
    ("no_grad torch_ops.linear", "torch_ops.linear(x, w, b)", True),
    ("no_grad torch_ops._C.linear", "C.linear(x, w, b)", True),
    ("no_grad torch.addmm(b, x, w.t())", "torch.addmm(b, x, wt)", True),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.m, args.k)
    w = torch.randn(args.n, args.k, requires_grad=True)
    b = torch.randn(args.n, requires_grad=True)
    env = dict(F=F, torch=torch, torch_ops=torch_ops, C=torch_ops._C, op=torch.ops.torch_ops.linear.default,
               x=x, w=w, b=b, wt=w.detach().t())
    times = {name: [] for name, _, _ in ROWS}
    for _ in range(args.repeats):
        for name, stmt, no_grad in ROWS:
            setup = "torch.set_grad_enabled(False)" if no_grad else "torch.set_grad_enabled(True)"
            t = Timer(stmt, setup=setup, globals=env, num_threads=args.threads).blocked_autorange(min_run_time=0.2)
            times[name].append(t.median * 1e6)
    base = statistics.median(times["F.linear"])
    print(f"linear {args.m}x{args.k} by {args.n}x{args.k}, float32, CPU, {args.threads} thread(s), "
          f"torch {torch.__version__}, median of {args.repeats}")
    print(f"{'call':<40}{'us':>8}{'vs F.linear':>13}")
    for name, _, _ in ROWS:
        med = statistics.median(times[name])
        print(f"{name:<40}{med:>8.2f}{med - base:>+12.2f}")


if __name__ == "__main__":
    main()
