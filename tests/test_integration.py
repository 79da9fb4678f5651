"""torch_ops where PyTorch users put it: torch.export (and its save/load round trip),
DistributedDataParallel and FSDP2 on two CPU processes, concurrent calls from Python threads,
whole-module serialization and deepcopy."""

import copy
import io
import threading

import pytest
import torch
import torch.nn.functional as F

import torch_ops


def _mlp(dtype=torch.float32):
    """A small model made of torch_ops modules: linear, activations, fused linear."""
    return torch.nn.Sequential(
        torch_ops.nn.Linear(8, 16),
        torch_ops.nn.GELU(),
        torch_ops.nn.FusedLinear(16, 16, activation="silu"),
        torch_ops.nn.Linear(16, 16),
        torch_ops.nn.SwiGLU(),
        torch_ops.nn.FusedLinear(8, 4, activation=None),
    ).to(dtype)


# ----------------------------------------------------------------------------- torch.export


def test_export_and_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    for converted in (torch_ops.nn.convert(copy.deepcopy(model)), torch_ops.nn.convert(copy.deepcopy(model), fuse=True), _mlp()):
        x = torch.randn(3, 8)
        ep = torch.export.export(converted, (x,))
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert targets and all(t.startswith("torch_ops.") for t in targets), targets
        torch.testing.assert_close(ep.module()(x), converted(x))
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        buf.seek(0)
        loaded = torch.export.load(buf)
        x2 = torch.randn(3, 8)
        torch.testing.assert_close(loaded.module()(x2), converted(x2))


def test_export_dynamic_batch():
    model = _mlp()
    batch = torch.export.Dim("batch")
    ep = torch.export.export(model, (torch.randn(4, 8),), dynamic_shapes=({0: batch},))
    for n in (2, 7):
        x = torch.randn(n, 8)
        torch.testing.assert_close(ep.module()(x), model(x))


# ----------------------------------------------------------------------------- distributed


def _train(model, batches, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in batches:
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


def _distributed_worker(rank, world, init_file, out_file, batches, wrapper):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = _mlp(torch.float64)
        if wrapper == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(model)
        else:  # FSDP2: each module with parameters sharded, then the root
            from torch.distributed.fsdp import fully_shard

            for m in model:
                if any(True for _ in m.parameters()):
                    fully_shard(m)
            wrapped = fully_shard(model)
        shard = [(x.chunk(world)[rank], y.chunk(world)[rank]) for x, y in batches]
        _train(wrapped, shard)
        state = model.state_dict()
        if wrapper == "fsdp2":
            state = {k: v.full_tensor() for k, v in state.items()}  # DTensor shards -> whole
        if rank == 0:
            torch.save(state, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
@pytest.mark.parametrize("wrapper", ["ddp", "fsdp2"])
def test_distributed_two_cpu_processes_match_one_process(tmp_path, wrapper):
    """DDP / FSDP2 average the ranks' gradients of equal shards: the full batch's."""
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 8, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)) for _ in range(4)]
    out = tmp_path / "trained.pt"
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(out), batches, wrapper), nprocs=2, join=True)
    torch.manual_seed(0)
    ref = _mlp(torch.float64)
    before = copy.deepcopy(ref.state_dict())
    _train(ref, batches)
    got = torch.load(out)
    assert set(got) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert not torch.equal(v, before[k])  # training moved every parameter
        torch.testing.assert_close(got[k], v, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- threads


def test_concurrent_calls_from_python_threads():
    """Every op called at once from several Python threads (the bindings release the GIL)
    gives what it gives alone, forward and backward."""
    torch.manual_seed(2)
    x = torch.randn(300, 64, requires_grad=True)
    w = torch.randn(32, 64, requires_grad=True)
    b = torch.randn(32, requires_grad=True)
    calls = {
        "linear": lambda: torch_ops.linear(x, w, b),
        "gelu": lambda: torch_ops.gelu(x),
        "silu": lambda: torch_ops.silu(x),
        "swiglu": lambda: torch_ops.swiglu(x),
        "fused_gelu": lambda: torch_ops.fused_linear(x, w, b, "gelu"),
        "fused_relu": lambda: torch_ops.fused_linear(x, w, b, "relu"),
    }

    def run(fn):
        y = fn()
        return (y.detach(), *torch.autograd.grad(y.square().sum(), (x, w, b), allow_unused=True))

    expected = {k: run(fn) for k, fn in calls.items()}
    errors, barrier = [], threading.Barrier(6)

    def worker(names):
        try:
            barrier.wait()
            for _ in range(10):
                for k in names:
                    for got, exp in zip(run(calls[k]), expected[k]):
                        if exp is None:
                            assert got is None
                        else:
                            assert torch.equal(got, exp), k
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    keys = list(calls)
    threads = [threading.Thread(target=worker, args=(keys[i:] + keys[:i],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# ----------------------------------------------------------------------------- serialization


def test_modules_save_load_and_deepcopy(tmp_path):
    torch.manual_seed(3)
    model = _mlp()
    x = torch.randn(5, 8)
    y = model(x)
    torch.save(model, tmp_path / "whole.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    whole = torch.load(tmp_path / "whole.pt", weights_only=False)
    fresh = _mlp()
    fresh.load_state_dict(torch.load(tmp_path / "state.pt"))
    for m in (whole, fresh, copy.deepcopy(model)):
        assert [type(a) for a in m] == [type(a) for a in model]
        torch.testing.assert_close(m(x), y)
    assert whole[2].activation == "silu" and whole[5].activation is None


def test_set_num_threads_one_gives_the_same_results():
    torch.manual_seed(4)
    x = torch.randn(2000, 64, requires_grad=True)
    w = torch.randn(48, 64, requires_grad=True)
    b = torch.randn(48, requires_grad=True)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, threads, 1):
            torch.set_num_threads(n)
            y = torch_ops.fused_linear(x, w, b, "gelu")
            outs.append((y.detach(), *torch.autograd.grad(torch_ops.silu(y).sum(), (x, w, b))))
    finally:
        torch.set_num_threads(threads)
    for got in outs[1:]:
        for a, e in zip(got, outs[0]):
            torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)
    for a, e in zip(outs[2], outs[0]):
        assert torch.equal(a, e)  # the same thread count: bitwise the same


def _deterministic_calls():
    torch.manual_seed(5)
    x = torch.randn(3000, 96, requires_grad=True)
    w = torch.randn(64, 96, requires_grad=True)
    b = torch.randn(64, requires_grad=True)
    return {
        "linear": ((x, w, b), lambda: torch_ops.linear(x, w, b)),
        "gelu": ((x,), lambda: torch_ops.gelu(x)),
        "swiglu": ((x,), lambda: torch_ops.swiglu(x)),
        "fused_linear": ((x, w, b), lambda: torch_ops.fused_linear(x, w, b, "silu")),
    }


@pytest.mark.parametrize("name", list(_deterministic_calls()))
def test_deterministic_mode_bitwise_run_to_run(name):
    """Under torch.use_deterministic_algorithms(True), two runs give bitwise the same
    values and gradients on CPU (no kernel of ours depends on scheduling)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        inputs, fn = _deterministic_calls()[name]
        runs = []
        for _ in range(3):
            y = fn()
            runs.append((y.detach(), *torch.autograd.grad(y.square().sum(), inputs)))
    finally:
        torch.use_deterministic_algorithms(before)
    for run in runs[1:]:
        for a, e in zip(run, runs[0]):
            assert torch.equal(a, e)
