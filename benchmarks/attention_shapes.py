"""scaled_dot_product_attention on CPU at shapes beyond the bench's four cases: decoding (one
query row against a long cache), few query rows, short sequences, wide and odd head dims,
float64, bfloat16, a key-padding mask.

    python benchmarks/attention_shapes.py [--threads 2] [--rounds 5]

For each shape, torch_ops against F.scaled_dot_product_attention on the same tensors,
interleaved round by round so that drift hits both alike; medians of the rounds. Forward
without grad for the decoding shapes (inference), forward+backward for the others.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import torch_ops

# (B, H, L, S, E, dtype, kind, backward): kind is "full", "causal" or "keypad"
SHAPES = [
    (1, 32, 1, 4096, 128, torch.float32, "full", False),
    (8, 8, 1, 1024, 64, torch.float32, "full", False),
    (1, 8, 16, 2048, 64, torch.float32, "full", False),
    (2, 4, 128, 128, 64, torch.float32, "full", True),
    (16, 8, 64, 64, 32, torch.float32, "full", True),
    (8, 12, 197, 197, 64, torch.float32, "full", True),
    (2, 8, 1024, 1024, 128, torch.float32, "full", True),
    (1, 16, 2048, 2048, 80, torch.float32, "causal", True),
    (2, 8, 512, 512, 64, torch.float64, "full", True),
    (2, 8, 1024, 1024, 64, torch.bfloat16, "causal", True),
    (4, 8, 1024, 1024, 64, torch.float32, "keypad", True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.rounds} rounds (ms)")
    print("| B, H, L, S, E | dtype | mask | pass | torch_ops | PyTorch | x |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    g = torch.Generator().manual_seed(0)
    for B, H, L, S, E, dtype, kind, backward in SHAPES:
        q = torch.randn(B, H, L, E, generator=g).to(dtype).requires_grad_(backward)
        k = torch.randn(B, H, S, E, generator=g).to(dtype).requires_grad_(backward)
        v = torch.randn(B, H, S, E, generator=g).to(dtype).requires_grad_(backward)
        go = torch.randn(B, H, L, E, generator=g).to(dtype)
        kw = {"is_causal": kind == "causal"}
        if kind == "keypad":
            kw = {"attn_mask": torch.rand(B, 1, 1, S, generator=g) > 0.1}

        def call(fn):
            if backward:
                torch.autograd.grad(fn(q, k, v, **kw), (q, k, v), go)
            else:
                with torch.no_grad():
                    fn(q, k, v, **kw)

        fns = {"ours": torch_ops.scaled_dot_product_attention, "torch": F.scaled_dot_product_attention}
        for fn in fns.values():
            call(fn)
        times = {n: [] for n in fns}
        reps = 1 if backward else 10
        for _ in range(args.rounds):
            for n, fn in fns.items():
                t = time.perf_counter()
                for _ in range(reps):
                    call(fn)
                times[n].append((time.perf_counter() - t) / reps)
        ours, theirs = (statistics.median(times[n]) * 1e3 for n in ("ours", "torch"))
        shape = f"{B}, {H}, {L}, {S}, {E}"
        p = "fwd+bwd" if backward else "fwd"
        print(f"| {shape} | {str(dtype)[6:]} | {kind} | {p} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
