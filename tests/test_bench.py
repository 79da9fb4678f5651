"""The benchmark suite's plumbing (torch_ops.bench) on tiny cases: that it runs and that
its JSON has the fields. Never its timings (those are for `python -m torch_ops.bench`)."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F

import torch_ops
from torch_ops.bench import Case, discover, main
from torch_ops.bench.report import device_slug


def _inputs(device, dtype):
    x = torch.randn(4, 8, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(3, 8, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(3, device=device, dtype=dtype, requires_grad=True)
    return x, w, b


def _fused_ours(x, w, b):
    return F.gelu(torch_ops.linear(x, w, b))


def _fused_eager(x, w, b):
    return F.gelu(F.linear(x, w, b))


def bench_cases():
    """Found by the suite through families=[__file__]; also imported by the memory workers.

    Peak memory (a fresh process per implementation, a few seconds each) is measured for
    "large" cases only: here tiny_linear (ours and eager); the compile reference's
    measurement is checked in this process by test_peak_memory_of_compile_reference."""
    return [
        Case("tiny_linear", "tiny", "x 4x8, W 3x8, b 3", _inputs, ours=torch_ops.linear, eager=F.linear,
             size="large", flops_fwd=2 * 4 * 3 * 8, flops_bwd=4 * 4 * 3 * 8),  # fmt: skip
        Case("tiny_fused", "tiny", "x 4x8, W 3x8, b 3", _inputs, ours=_fused_ours, eager=_fused_eager,
             size="small", compile=True),  # fmt: skip
    ]


FAST = ["--quick", "--min-time", "0.002", "--rounds", "1", "--compile-backend", "aot_eager", "--device", "cpu"]


def test_run_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "run.json"
    rc = main([*FAST, "--json", str(out), "--plot", str(tmp_path / "run.png"), "--save", str(tmp_path / "results")],
              families=[__file__])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "| tiny_linear | tiny | float32 |" in captured.out and "| tiny_fused | tiny | float32 |" in captured.out

    doc = json.loads(out.read_text())
    assert doc["schema"] == 1
    meta = doc["meta"]
    for key in ("date", "device", "device_name", "cpu_model", "threads", "torch", "torch_ops", "commit", "quick"):
        assert key in meta, key
    assert meta["device"] == "cpu" and meta["threads"] == torch.get_num_threads()
    assert doc["references"]["copy"]["gbps"] > 0
    assert doc["references"]["mm"]["float32"]["gflops"] > 0

    rows = {r["op"]: r for r in doc["results"]}
    assert set(rows) == {"tiny_linear", "tiny_fused"}
    for op, impls in (("tiny_linear", {"ours", "eager"}), ("tiny_fused", {"ours", "eager", "compile"})):
        r = rows[op]
        assert "error" not in r, r.get("error")
        assert r["dtype"] == "float32" and r["max_abs_diff_fwd"] < 1e-4
        assert set(r["time_s"]) == impls
        for impl in impls:
            assert set(r["time_s"][impl]) == {"fwd", "fwdbwd"} and all(t > 0 for t in r["time_s"][impl].values())
            assert set(r["roofline"][impl]["fwd"]) == {"gbps", "copy_frac", "gflops", "mm_frac"}
        assert set(r["ratio"]) == impls - {"ours"}
        # x 4x8 + W 3x8 + b 3 read, y 4x3 written, in float32; backward adds grad_output and the three grads
        assert r["bytes"] == {"fwd": 4 * (32 + 24 + 3 + 12), "fwdbwd": 4 * (2 * (32 + 24 + 3) + 2 * 12)}
    assert rows["tiny_linear"]["roofline"]["ours"]["fwdbwd"]["gflops"] > 0
    lin = rows["tiny_linear"]
    assert set(lin["peak_mib"]) == {"ours", "eager"}, lin.get("peak_errors")
    assert all(lin["peak_mib"][i] >= 0 and lin["peak_errors"][i] is None for i in lin["peak_mib"])
    assert "peak_mib" not in rows["tiny_fused"]  # measured for the large cases only
    assert rows["tiny_fused"]["roofline"]["ours"]["fwd"]["gflops"] is None

    stem = tmp_path / "results" / f"{meta['date']}-{device_slug(meta)}"
    md = stem.with_suffix(".md").read_text()
    assert meta["commit"] in md and meta["torch"] in md and "tiny_fused" in md
    assert json.loads(stem.with_suffix(".json").read_text())["results"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in captured.err
    else:
        assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "run.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_of_compile_reference():
    from torch_ops.bench.memory import cpu_peak_mib_here

    fused = next(c for c in bench_cases() if c.compile)
    got = cpu_peak_mib_here(fused, "compile", torch.float32, "aot_eager")
    assert got["error"] is None and got["peak_mib"] >= 0


def _relu_8mib(device, dtype):
    return (torch.randn(2048, 1024, device=device, dtype=dtype, requires_grad=True),)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_counts_outputs_of_the_block_cache():
    """torch_ops' large CPU outputs come from its block cache, which keeps the warm-up's
    freed blocks: the measurement must empty it, or the measured call would reuse them and
    its 8 MiB output and 8 MiB gradient would not count."""
    from torch_ops.bench.memory import cpu_peak_mib_here

    case = Case("relu_8mib", "large", "x 2048x1024", _relu_8mib, ours=torch_ops.relu, eager=F.relu, size="large")
    got = cpu_peak_mib_here(case, "ours", torch.float32, "aot_eager")
    assert got["error"] is None and got["peak_mib"] >= 15.5, got


def test_linear_declares_its_cases():
    cases = {c.name: c for c in discover(["linear"])}
    assert set(cases) == {"small", "medium", "large"}
    assert {c.name for c in discover(["linear"], quick=True)} == {"small", "large"}
    assert cases["large"].flops_fwd == 2 * 4096 * 1024 * 1024 and not cases["large"].compile
    x, w, b = cases["small"].make_inputs(torch.device("cpu"), torch.float32)
    assert x.shape == (32, 64) and w.shape == (64, 64) and b.shape == (64,)
    torch.testing.assert_close(cases["small"].ours(x, w, b), cases["small"].eager(x, w, b))


def test_cli_rejects_unknown_ops(capsys):
    assert main(["--ops", "no_such_op", "--device", "cpu"], families=[__file__]) == 2
    assert "unknown ops" in capsys.readouterr().err


@pytest.mark.parametrize(
    "meta,slug",
    [({"device": "cpu"}, "cpu"), ({"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}, "cuda-h100-80gb-hbm3")],
)
def test_device_slug(meta, slug):
    assert device_slug(meta) == slug
