"""layer_norm's kernels against ATen's, op against op (no autograd, no Python wrappers).

    python benchmarks/norm_kernels.py [--threads 2] [--m 64 --n 65536] [--rounds 3]

Forward: torch.ops.torch_ops.layer_norm against torch.ops.aten.native_layer_norm; backward:
torch.ops.torch_ops.norm_backward against torch.ops.aten.native_layer_norm_backward, both
with the same saved mean / rstd and all three gradients. Each round times every row once
(median of per-call times), the rows interleaved so that drift hits them alike. Both sides
allocate their outputs as they normally do (torch_ops from its block cache, ATen from
glibc), so at shapes whose outputs glibc reuses from its heap (16 MiB: 64x65536) this is
kernel against kernel; at 32 MiB outputs ATen's time includes its page faults.
"""

import argparse
import statistics
import time

import torch

import torch_ops  # noqa: F401  (registers torch.ops.torch_ops)


def per_call(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    m, n = args.m, args.n
    x, gy = torch.randn(m, n), torch.randn(m, n)
    w, b = 1 + 0.1 * torch.randn(n), 0.1 * torch.randn(n)
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, (n,), w, b, 1e-5)
    mean, rstd = mean.view(m), rstd.view(m)
    ours, aten = torch.ops.torch_ops, torch.ops.aten
    rows = {
        "forward torch_ops": lambda: ours.layer_norm(x, (n,), w, b, 1e-5),
        "forward ATen": lambda: aten.native_layer_norm(x, (n,), w, b, 1e-5),
        "backward torch_ops": lambda: ours.norm_backward(gy, x, mean, rstd, (n,), w, None, 1e-5, [True, True, True]),
        "backward ATen": lambda: aten.native_layer_norm_backward(
            gy, x, (n,), mean.view(m, 1), rstd.view(m, 1), w, b, [True, True, True]
        ),
    }
    times = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            times[name].append(per_call(fn, args.calls))
    print(f"layer_norm {m}x{n} float32, {args.threads} thread(s), {args.rounds} rounds x {args.calls} calls")
    for name, ts in times.items():
        print(f"  {name:20s} {statistics.median(ts) * 1e3:7.3f} ms  (rounds: {', '.join(f'{t * 1e3:.3f}' for t in ts)})")
    for part in ("forward", "backward"):
        ratio = statistics.median(times[f"{part} ATen"]) / statistics.median(times[f"{part} torch_ops"])
        print(f"  {part}: ATen / torch_ops = {ratio:.2f}x")


if __name__ == "__main__":
    main()
