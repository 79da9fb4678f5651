"""What a run reports: the machine, the markdown table, the JSON and the PNG chart."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

from .case import MODE_LABELS, MODES

IMPL_LABELS = {"ours": "torch_ops", "eager": "eager", "compile": "torch.compile"}
SCHEMA = 1


# -- the machine ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """``git rev-parse --short HEAD`` of the checkout torch_ops runs from (+dirty)."""
    root = Path(__file__).resolve().parents[2]

    def run(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)

    try:
        head = run("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(device: torch.device, threads: int) -> dict:
    now = datetime.datetime.now()
    try:
        import torch_ops

        ops_version = torch_ops.__version__
    except Exception:  # noqa: BLE001
        ops_version = "unknown"
    info = {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.isoformat(timespec="seconds"),
        "device": device.type,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "torch_ops": ops_version,
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": "",  # filled in by runner.main
        "loadavg_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    else:
        info["device_name"] = f"{info['cpu_model']} ({os.cpu_count()} logical CPUs)"
    return info


def device_slug(meta: dict) -> str:
    """``cpu``, or ``cuda-<gpu>`` e.g. ``cuda-h100-80gb-hbm3``: the results' file-name part."""
    if meta["device"] != "cuda":
        return meta["device"]
    name = re.sub(r"^nvidia\s+", "", meta.get("device_name", "").lower())
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"cuda-{name}" if name else "cuda"


# -- formatting -----------------------------------------------------------------------


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x"


def fmt_rate(value: Optional[float], frac: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} ({frac:.0%})" if frac is not None else f"{value:.3g}"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def markdown(doc: dict) -> str:
    meta, refs, results = doc["meta"], doc["references"], doc["results"]
    has_compile = any("compile" in r.get("time_s", {}) for r in results)
    lines = [
        f"# torch_ops benchmark: {meta['date']}, {device_slug(meta)}",
        "",
        "| | |",
        "| --- | --- |",
        f"| date | {meta['time']} |",
        f"| device | {meta['device']}: {meta['device_name']} |",
    ]
    if meta["device"] == "cuda":
        lines.append(f"| CUDA | {meta.get('cuda')}, TF32 matmul {meta.get('tf32_matmul')} |")
    lines += [
        f"| CPU | {meta['cpu_model']}, {meta['cpu_count']} logical CPUs |",
        f"| threads | {meta['threads']} (1-min load average at start: {meta.get('loadavg_1min_at_start')}) |",
        f"| torch | {meta['torch']} |",
        f"| torch_ops | {meta['torch_ops']}, commit {meta['commit']} |",
        f"| python | {meta['python']}, {meta['platform']} |",
        f"| run | {'quick' if meta['quick'] else 'full'}: {meta['rounds']} interleaved rounds, "
        f"{meta['min_time']:g} s per implementation and mode; {meta['timer']} |",
        f"| command | `{meta['command']}` |",
        "",
        "References measured in this run:",
        "",
    ]
    copy = refs.get("copy")
    if copy:
        lines.append(
            f"- copy bandwidth: {copy['gbps']:.1f} GB/s (`dst.copy_(src)`, {copy['buffer_mib']:.0f} MiB float32, "
            f"bytes = read + write)"
        )
    for dt, mm in refs.get("mm", {}).items():
        lines.append(f"- `torch.mm` {dt} {mm['n']}x{mm['n']}x{mm['n']}: {mm['gflops']:.1f} GFLOP/s")
    lines += [""]

    head = ["op", "case", "dtype", "shape", "ours fwd", "eager fwd", "x fwd"]
    head += ["ours fwd+bwd", "eager fwd+bwd", "x fwd+bwd"]
    if has_compile:
        head += ["compile fwd", "x fwd vs compile", "compile fwd+bwd", "x fwd+bwd vs compile"]
    head += ["GB/s fwd (% copy)", "GB/s fwd+bwd (% copy)", "GFLOP/s fwd (% mm)", "GFLOP/s fwd+bwd (% mm)"]
    head += ["peak MiB fwd+bwd (ours / eager" + (" / compile)" if has_compile else ")")]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        row = [r["op"], r["case"], r["dtype"], r["shape"]]
        if r.get("error"):
            row += [f"error: {r['error']}"] + [""] * (len(head) - len(row) - 1)
            lines.append("| " + " | ".join(row) + " |")
            continue
        t = r["time_s"]
        for m in MODES:
            row += [fmt_time(_get(t, "ours", m)), fmt_time(_get(t, "eager", m)), fmt_ratio(_get(r, "ratio", "eager", m))]
        if has_compile:
            for m in MODES:
                row += [fmt_time(_get(t, "compile", m)), fmt_ratio(_get(r, "ratio", "compile", m))]
        roof = r.get("roofline", {}).get("ours", {})
        for m in MODES:
            row.append(fmt_rate(_get(roof, m, "gbps"), _get(roof, m, "copy_frac")))
        for m in MODES:
            row.append(fmt_rate(_get(roof, m, "gflops"), _get(roof, m, "mm_frac")))
        peak = r.get("peak_mib")
        impls = ["ours", "eager"] + (["compile"] if has_compile else [])
        row.append(" / ".join("-" if _get(peak, i) is None else f"{peak[i]:.0f}" for i in impls) if peak else "-")
        lines.append("| " + " | ".join(row) + " |")

    lines += [
        "",
        "Times are medians of per-call times after warm-up; forward with the inputs requiring grad (as in "
        "training), forward+backward = forward + `torch.autograd.grad` w.r.t. every input that requires grad. "
        "`x` columns are the speed-up of torch_ops: reference time / torch_ops time (> 1: torch_ops is faster). "
        "GB/s: bytes that must move (each input read once, each output written once) over the torch_ops time, "
        "as a fraction of the copy bandwidth above; GFLOP/s (GEMM ops): as a fraction of `torch.mm` above. "
        f"Peak memory: forward+backward of the large cases, above the inputs; {doc.get('peak_method', '')}.",
    ]
    errors = [r for r in results if r.get("error")] + [
        r for r in results if any(v for v in (r.get("peak_errors") or {}).values())
    ]
    if errors:
        lines += ["", "Errors:", ""]
        for r in results:
            if r.get("error"):
                lines.append(f"- {r['op']}/{r['case']} {r['dtype']}: {r['error']}")
            for impl, e in (r.get("peak_errors") or {}).items():
                if e:
                    lines.append(f"- {r['op']}/{r['case']} {r['dtype']} peak memory, {impl}: {e}")
    return "\n".join(lines) + "\n"


def write_json(doc: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def write_plot(doc: dict, path) -> bool:
    """A bar chart of the speed-ups. Returns False (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"torch_ops.bench: matplotlib is not installed, so no chart was written to {path} "
            "(pip install matplotlib, or pip install 'torch_ops[bench]'); the table and JSON are complete.",
            file=sys.stderr,
        )
        return False
    rows = [r for r in doc["results"] if not r.get("error")]
    series = [(ref, m) for ref in ("eager", "compile") for m in MODES if any(_get(r, "ratio", ref, m) for r in rows)]
    labels = [f"{r['op']}/{r['case']}\n{r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 + 0.45 * len(rows) * max(1, len(series))), 4.8))
    width = 0.8 / max(1, len(series))
    for j, (ref, m) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(rows))]
        ys = [_get(r, "ratio", ref, m) or 0.0 for r in rows]
        bars = ax.bar(xs, ys, width, label=f"{MODE_LABELS[m]} vs {IMPL_LABELS[ref]}")
        ax.bar_label(bars, labels=[f"{y:.2f}" if y else "" for y in ys], fontsize=7, padding=1)
    top = max([_get(r, "ratio", ref, m) or 0.0 for r in rows for ref, m in series] + [1.0])
    ax.set_ylim(0, 1.3 * top)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("speed-up: reference time / torch_ops time")
    meta = doc["meta"]
    ax.set_title(
        f"torch_ops {meta['torch_ops']} ({meta['commit']}) vs torch {meta['torch']}, {meta['date']}\n"
        f"{meta['device_name']}, {meta['threads']} threads" + (", quick run" if meta.get("quick") else ""),
        fontsize=9,
    )
    if series:
        ax.legend(fontsize=8, loc="upper center", ncol=min(2, len(series)))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
