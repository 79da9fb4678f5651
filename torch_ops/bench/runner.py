"""Running the cases and the command line: ``python -m torch_ops.bench``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import report
from .case import MODE_LABELS, MODES, Case, InputSet, compiled, tensor_bytes
from .discover import discover, family_label
from .memory import CPU_METHOD, CUDA_METHOD, cpu_peak_mib_many, cuda_peak_mib
from .progress import Progress
from .timing import copy_bandwidth, make_timer, mm_throughput, summarize

# Per implementation and mode: seconds of timing in all, split over interleaved rounds
# (ours, eager, compile, ours, eager, compile, ...) so that drift hits them alike.
FULL = {"min_time": 1.0, "rounds": 3}
QUICK = {"min_time": 0.25, "rounds": 2}


def _impls(case: Case) -> list:
    return ["ours", "eager"] + (["compile"] if case.compile else [])


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _bench_case(case, dtype, timer, min_time, rounds, backend, prog) -> dict:
    r = {"op": case.op, "case": case.name, "size": case.size, "dtype": _dtype_name(dtype), "shape": case.shape}
    label = f"{case.key} {r['dtype']}"
    steps = len(MODES) * rounds * len(_impls(case))
    done = 0
    try:
        first = InputSet(case, timer.device, dtype)
        sets = [first] + [InputSet(case, timer.device, dtype) for _ in range(timer.num_sets(first.nbytes) - 1)]
        impls = {"ours": case.ours, "eager": case.eager}
        if case.compile:
            impls["compile"] = compiled(case.eager, backend)
        with torch.no_grad():
            diff = (case.ours(*first.inputs).float() - case.eager(*first.inputs).float()).abs().max().item()
        modes = MODES if first.grad_inputs else ("fwd",)
        in_bytes, gin_bytes = tensor_bytes(first.inputs), tensor_bytes(first.grad_inputs)
        r.update(
            input_sets=len(sets),
            max_abs_diff_fwd=diff,
            bytes={
                "fwd": case.bytes_fwd or in_bytes + first.output_bytes,
                "fwdbwd": case.bytes_fwdbwd or in_bytes + 2 * first.output_bytes + gin_bytes,
            },
            flops={"fwd": case.flops_fwd, "fwdbwd": case.flops_fwdbwd},
            time_s={i: {} for i in impls},
            iqr_s={i: {} for i in impls},
        )
        for mode in modes:
            fns = {impl: [s.call(f, mode) for s in sets] for impl, f in impls.items()}
            for impl in impls:  # warm-up first: this is where torch.compile compiles
                prog.show(f"{label} {MODE_LABELS[mode]} {impl}: warm-up")
                timer.warmup(fns[impl])
            samples = {impl: [] for impl in impls}
            for rnd in range(rounds):
                for impl in impls:
                    prog.show(f"{label} {MODE_LABELS[mode]} {impl} ({rnd + 1}/{rounds})")
                    samples[impl] += timer.measure(fns[impl], min_time / rounds)
                    done += 1
                    prog.advance(f"{label} {MODE_LABELS[mode]} {impl}")
            for impl in impls:
                s = summarize(samples[impl])
                r["time_s"][impl][mode], r["iqr_s"][impl][mode] = s["median"], s["iqr"]
            del fns
        del sets, first
    except Exception as e:  # noqa: BLE001 - reported in the table and the exit status
        r["error"] = f"{type(e).__name__}: {e}"
    if steps > done:  # an error, or no forward+backward: the steps that did not run
        prog.advance(f"{label} done", steps - done)
    return r


def _derive(r: dict, refs: dict) -> None:
    """Ratios (reference / ours) and roofline figures from the medians."""
    if r.get("error"):
        return
    t = r["time_s"]
    r["ratio"] = {
        ref: {m: t[ref][m] / t["ours"][m] for m in t[ref] if m in t["ours"]} for ref in t if ref != "ours"
    }
    copy = refs.get("copy", {}).get("gbps")
    mm = refs.get("mm", {}).get(r["dtype"], {}).get("gflops")
    r["roofline"] = {}
    for impl, by_mode in t.items():
        out = r["roofline"][impl] = {}
        for m, secs in by_mode.items():
            gbps = r["bytes"][m] / secs / 1e9
            f = {"gbps": gbps, "copy_frac": gbps / copy if copy else None, "gflops": None, "mm_frac": None}
            if r["flops"][m]:
                f["gflops"] = r["flops"][m] / secs / 1e9
                f["mm_frac"] = f["gflops"] / mm if mm else None
            out[m] = f


def run(
    cases: Sequence[Case],
    device="cpu",
    dtypes: Sequence[torch.dtype] = (torch.float32,),
    threads: Optional[int] = None,
    quick: bool = False,
    min_time: Optional[float] = None,
    rounds: Optional[int] = None,
    compile_backend: str = "inductor",
    memory: bool = True,
    progress: bool = True,
) -> dict:
    """Benchmarks ``cases`` and returns the JSON document (see ``report.markdown``)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    preset = QUICK if quick else FULL
    min_time = preset["min_time"] if min_time is None else min_time
    rounds = preset["rounds"] if rounds is None else rounds
    timer = make_timer(device, threads)
    meta = report.machine_info(device, threads)
    load = meta.get("loadavg_1min_at_start")
    if load is not None and load > 0.75 * (os.cpu_count() or 1):
        print(f"torch_ops.bench: the machine is busy (load average {load:.1f} on {os.cpu_count()} CPUs): "
              "timings will be noisy", file=sys.stderr)  # fmt: skip
    meta.update(
        quick=quick, min_time=min_time, rounds=rounds, timer=timer.description,
        dtypes=[_dtype_name(d) for d in dtypes], compile_backend=compile_backend,
    )  # fmt: skip

    todo = [(c, d) for c in cases for d in dtypes if c.supports(d)]
    mm_dtypes = sorted({d for c, d in todo if c.flops_fwd}, key=str)
    mem_jobs = [(c, i, d) for c, d in todo if c.size == "large" for i in _impls(c)] if memory else []
    total = 1 + len(mm_dtypes) + sum(len(MODES) * rounds * len(_impls(c)) for c, _ in todo) + len(mem_jobs)
    prog = Progress(total, enabled=progress)

    refs = {"mm": {}}
    prog.show("copy bandwidth")
    refs["copy"] = copy_bandwidth(timer, min_time)
    prog.advance("copy bandwidth")
    for d in mm_dtypes:
        prog.show(f"torch.mm {_dtype_name(d)}")
        refs["mm"][_dtype_name(d)] = mm_throughput(timer, d, min_time)
        prog.advance(f"torch.mm {_dtype_name(d)}")

    results = [_bench_case(c, d, timer, min_time, rounds, compile_backend, prog) for c, d in todo]
    for r in results:
        _derive(r, refs)

    # Peak memory of forward+backward, large cases only, after all timings.
    by_key = {(r["op"], r["case"], r["dtype"]): r for r in results}
    ok_jobs = [(c, i, d) for c, i, d in mem_jobs if not by_key[(c.op, c.name, _dtype_name(d))].get("error")]
    if len(ok_jobs) < len(mem_jobs):
        prog.advance("peak memory: skipped (errors)", len(mem_jobs) - len(ok_jobs))
    if device.type == "cuda":
        peaks = []
        for c, i, d in ok_jobs:
            prog.show(f"peak memory {c.key} {i}")
            try:
                peaks.append({"peak_mib": cuda_peak_mib(c, i, device, d, compile_backend), "error": None})
            except Exception as e:  # noqa: BLE001
                peaks.append({"peak_mib": None, "error": f"{type(e).__name__}: {e}"})
            prog.advance(f"peak memory {c.key} {i}")
    else:
        prog.show("peak memory (fresh processes)")
        peaks = cpu_peak_mib_many(ok_jobs, threads, compile_backend, on_done=prog.advance)
    for (c, i, d), p in zip(ok_jobs, peaks):
        r = by_key[(c.op, c.name, _dtype_name(d))]
        r.setdefault("peak_mib", {})[i] = p.get("peak_mib")
        r.setdefault("peak_errors", {})[i] = p.get("error")
    prog.close()
    return {
        "schema": report.SCHEMA,
        "meta": meta,
        "references": refs,
        "peak_method": CUDA_METHOD if device.type == "cuda" else CPU_METHOD,
        "results": results,
    }


def _parse_dtypes(text: str) -> list:
    out = []
    for name in filter(None, (s.strip() for s in text.split(","))):
        d = getattr(torch, name, None)
        if not isinstance(d, torch.dtype) or not d.is_floating_point:
            raise argparse.ArgumentTypeError(f"not a floating dtype: {name!r} (e.g. float32, bfloat16, float16)")
        out.append(d)
    return out


def _csv(text: str) -> list:
    return [s.strip() for s in text.split(",") if s.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torch_ops.bench",
        description="Times torch_ops against PyTorch eager (and torch.compile for fused ops), forward and "
        "forward+backward, with roofline and peak-memory columns.",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ops", type=_csv, help="comma-separated ops or families (default: all)")
    p.add_argument("--cases", type=_csv, help="comma-separated case names, e.g. small,large (default: all)")
    p.add_argument("--dtype", type=_parse_dtypes, default=[torch.float32], help="comma-separated (default float32)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch.get_num_threads())")
    p.add_argument("--quick", action="store_true", help="small and large cases, shorter timing")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="write a bar chart of the speed-ups (needs matplotlib)")
    p.add_argument("--md", metavar="PATH", help="write the markdown report")
    p.add_argument(
        "--save", metavar="DIR", help="write DIR/<date>-<device>.md, .json and .png (e.g. benchmarks/results)"
    )
    p.add_argument("--min-time", type=float, help="seconds of timing per implementation and mode")
    p.add_argument("--rounds", type=int, help="interleaved rounds that --min-time is split over")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile reference")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None, families: Optional[Sequence[str]] = None) -> int:
    """The command line. ``families`` replaces ``FAMILIES`` (tests use it). Returns the exit status."""
    args = parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_ops.bench: --device cuda, but CUDA is not available here", file=sys.stderr)
        return 2
    everything = discover(families)
    known = {c.op for c in everything} | {family_label(c.family) for c in everything}
    unknown = sorted(set(args.ops or ()) - known)
    if unknown:
        print(f"torch_ops.bench: unknown ops {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    cases = discover(families, ops=args.ops, names=args.cases, quick=args.quick)
    if not cases:
        print("torch_ops.bench: no case selected", file=sys.stderr)
        return 2
    doc = run(
        cases, device=args.device, dtypes=args.dtype, threads=args.threads, quick=args.quick,
        min_time=args.min_time, rounds=args.rounds, compile_backend=args.compile_backend,
        memory=args.memory, progress=args.progress,
    )  # fmt: skip
    doc["meta"]["command"] = shlex.join(["python", "-m", "torch_ops.bench", *(sys.argv[1:] if argv is None else argv)])
    md = report.markdown(doc)
    print(md)
    targets = {"json": args.json, "plot": args.plot, "md": args.md}
    written = []
    if args.save:
        stem = Path(args.save) / f"{doc['meta']['date']}-{report.device_slug(doc['meta'])}"
        written += [(kind, stem.with_suffix(ext)) for kind, ext in (("md", ".md"), ("json", ".json"), ("plot", ".png"))]
    written += [(k, Path(v)) for k, v in targets.items() if v]
    for kind, path in written:
        if kind == "md":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(md)
        elif kind == "json":
            report.write_json(doc, path)
        elif not report.write_plot(doc, path):
            continue
        print(f"torch_ops.bench: wrote {path}", file=sys.stderr)
    errors = [r for r in doc["results"] if r.get("error")]
    for r in errors:
        print(f"torch_ops.bench: {r['op']}/{r['case']} {r['dtype']} failed: {r['error']}", file=sys.stderr)
    return 1 if errors else 0
