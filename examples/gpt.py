"""A small GPT-style character language model, written with plain torch.nn, trained twice
on the same data from the same initialisation: once as written, once after
``torch_ops.nn.convert(model, fuse=True)``. Prints loss and time per step for both runs
and saves the two loss curves.

    python examples/gpt.py                      # CPU (or CUDA when present), 300 steps
    python examples/gpt.py --steps 100 --device cpu --out /tmp/gpt

The text is the source of a few modules of Python's standard library (it ships with
Python: nothing to download).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

import torch_ops


def corpus() -> str:
    import argparse as a
    import collections as c
    import textwrap as t

    return "\n".join(inspect.getsource(m) for m in (t, a, c))


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, dim: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.loss = nn.CrossEntropyLoss()

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        logits = self.head(self.ln(self.blocks(x)))
        return self.loss(logits.flatten(0, 1), targets.flatten())


def batches(data: torch.Tensor, steps: int, batch: int, context: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(data) - context - 1, (batch,), generator=g)
        x = torch.stack([data[j : j + context] for j in i.tolist()])
        y = torch.stack([data[j + 1 : j + context + 1] for j in i.tolist()])
        yield x, y


def train(model, data, args, device):
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    losses, times = [], []
    for step, (x, y) in enumerate(batches(data, args.steps, args.batch, args.context, seed=1)):
        x, y = x.to(device), y.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"  step {step:4d}  loss {losses[-1]:.4f}  {1e3 * times[-1]:.1f} ms")
    return losses, times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    text = corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(ch) for ch in text], dtype=torch.long)
    torch.manual_seed(0)
    model = GPT(len(chars), args.context).to(device)
    fused = copy.deepcopy(model)
    fused, replaced = torch_ops.nn.convert(fused, fuse=True, report=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"{len(text)} characters, vocabulary {len(chars)}, {params / 1e3:.0f}k parameters, device {device}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"convert(fuse=True) replaced {len(replaced)} modules: " + ", ".join(sorted({c for _, c in replaced})))

    results = {}
    for name, m in (("torch.nn", model), ("torch_ops", fused)):
        print(f"{name}:")
        losses, times = train(m, data, args, device)
        steady = sorted(times[len(times) // 5 :])  # after warm-up
        results[name] = {"losses": losses, "ms_per_step": 1e3 * steady[len(steady) // 2]}

    a, b = results["torch.nn"], results["torch_ops"]
    diff = max(abs(x - y) for x, y in zip(a["losses"], b["losses"]))
    summary = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": args.steps,
        "final_loss": {k: v["losses"][-1] for k, v in results.items()},
        "ms_per_step_median": {k: round(v["ms_per_step"], 2) for k, v in results.items()},
        "speedup": round(a["ms_per_step"] / b["ms_per_step"], 3),
        "max_loss_difference": diff,
        "replaced": sorted({c for _, c in replaced}),
    }
    print(json.dumps(summary, indent=2))
    os.makedirs(args.out, exist_ok=True)
    tag = "cpu" if device.type == "cpu" else "cuda"
    with open(os.path.join(args.out, f"gpt-{tag}.json"), "w") as f:
        json.dump({**summary, "losses": {k: v["losses"] for k, v in results.items()}}, f)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure")
        return summary
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, v in results.items():
        ax.plot(v["losses"], label=f"{k} ({v['ms_per_step']:.1f} ms/step)", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"GPT {params / 1e3:.0f}k params, {summary['device']}: torch.nn vs torch_ops (convert, fuse=True)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, f"gpt-{tag}.png"), dpi=120)
    print("wrote", os.path.join(args.out, f"gpt-{tag}.png"))
    return summary


if __name__ == "__main__":
    main()
