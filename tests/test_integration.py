"""torch_ops where PyTorch users put it: torch.export (and its save/load round trip),
DistributedDataParallel and FSDP2 on two CPU processes, concurrent calls from Python threads,
torch.set_num_threads and deterministic mode, whole-module serialization and deepcopy. The
models and calls come from two tables (MODELS, _calls) that the tests share."""

import copy
import gc
import io
import operator
import threading

import pytest
import torch
import torch.nn.functional as F

import torch_ops


def _mlp(dtype=torch.float32):
    """A small model made of torch_ops modules: linear, activations, fused linear, norms."""
    return torch.nn.Sequential(
        torch_ops.nn.Linear(8, 16),
        torch_ops.nn.LayerNorm(16),
        torch_ops.nn.GELU(),
        torch_ops.nn.FusedLinear(16, 16, activation="silu"),
        torch_ops.nn.RMSNorm(16),
        torch_ops.nn.Linear(16, 16),
        torch_ops.nn.SwiGLU(),
        torch_ops.nn.FusedLinear(8, 4, activation=None),
    ).to(dtype)


def _torch_mlp():
    """torch.nn modules that convert() replaces, fused or not."""
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.GELU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
        torch.nn.RMSNorm(16), torch.nn.Linear(16, 4), torch.nn.Softmax(dim=-1),
    )  # fmt: skip


class _LossHead(torch.nn.Module):
    """The softmax family's modules in one model of (x, target): a log-softmax classifier with
    CrossEntropyLoss, and a LinearCrossEntropyLoss head (two losses out)."""

    def __init__(self):
        super().__init__()
        self.norm = torch_ops.nn.LayerNorm(8)
        self.proj = torch_ops.nn.Linear(8, 5)
        self.log_softmax = torch_ops.nn.LogSoftmax(dim=-1)
        self.ce = torch_ops.nn.CrossEntropyLoss(label_smoothing=0.1)
        self.lce = torch_ops.nn.LinearCrossEntropyLoss(8, 5, bias=True, chunk_size=2)

    def forward(self, x, target):
        h = self.norm(x)
        return self.ce(self.log_softmax(self.proj(h)), target), self.lce(h, target)


class _Attention(torch.nn.Module):
    """MultiheadAttention (self-attention, the memory-efficient path) in a residual block."""

    def __init__(self):
        super().__init__()
        self.attn = torch_ops.nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = torch_ops.nn.LayerNorm(8)

    def forward(self, x):
        h = x.view(1, x.shape[0], 8)
        return self.norm(h + self.attn(h, h, h, need_weights=False)[0]).view(-1, 8)


def _example(name, seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return (x, torch.randint(0, 5, (n,), generator=g)) if name == "loss_head" else (x,)


# name -> a model made of torch_ops modules (fresh, seeded), whose inputs _example makes.
MODELS = {
    "mlp": _mlp,
    "converted": lambda: torch_ops.nn.convert(_torch_mlp()),
    "converted_fused": lambda: torch_ops.nn.convert(_torch_mlp(), fuse=True),
    "loss_head": _LossHead,
    "attention": _Attention,
}


def _model(name):
    torch.manual_seed(0)
    return MODELS[name]()


# ----------------------------------------------------------------------------- torch.export


@pytest.mark.parametrize("name", list(MODELS))
def test_export_and_round_trip(name):
    model = _model(name)
    ep = torch.export.export(model, _example(name))
    # (getitem: the outputs of a multi-output op, e.g. layer_norm's (y, mean, rstd))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function" and n.target is not operator.getitem}
    if name == "attention":  # head reshapes and the residual add are ATen's; the math is ours
        compute = ("linear", "mm", "matmul", "softmax", "norm", "scaled_dot_product", "attention")
        assert "torch_ops.scaled_dot_product_attention.default" in targets, targets
        assert not [t for t in targets if t.startswith("aten.") and any(c in t for c in compute)], targets
    else:
        assert targets and all(t.startswith("torch_ops.") for t in targets), targets
    torch.testing.assert_close(ep.module()(*_example(name)), model(*_example(name)))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    torch.testing.assert_close(loaded.module()(*_example(name, 1)), model(*_example(name, 1)))


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
        # Teardown in an order gloo survives: no rank closes its connections while the
        # other is still working (the barrier), and no wrapper keeps the process group
        # alive past destroy_process_group (DDP's reducer holds it; a group destroyed
        # only at interpreter exit, after the peer has gone, can abort the process).
        dist.barrier()
        del wrapped, model, state
        gc.collect()
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


def _calls():
    """name -> (differentiable inputs, a call of one op on them): every functional op, at
    sizes where the CPU kernels run in parallel."""
    torch.manual_seed(5)
    x = torch.randn(3000, 96, requires_grad=True)
    r = torch.randn(3000, 96, requires_grad=True)
    w = torch.randn(64, 96, requires_grad=True)
    b = torch.randn(64, requires_grad=True)
    nw = (1 + 0.1 * torch.randn(96)).requires_grad_()
    nb = (0.1 * torch.randn(96)).requires_grad_()
    t = torch.randint(0, 96, (3000,))
    t[::7] = -100
    probs = torch.rand(3000, 96).softmax(-1)
    q = torch.randn(2, 4, 300, 32, requires_grad=True)
    k = torch.randn(2, 2, 600, 32, requires_grad=True)
    v = torch.randn(2, 2, 600, 16, requires_grad=True)
    am = torch.randn(300, 600, requires_grad=True)
    return {
        "linear": ((x, w, b), lambda: torch_ops.linear(x, w, b)),
        "relu": ((x,), lambda: torch_ops.relu(x)),
        "leaky_relu": ((x,), lambda: torch_ops.leaky_relu(x, 0.2)),
        "gelu": ((x,), lambda: torch_ops.gelu(x)),
        "gelu_tanh": ((x,), lambda: torch_ops.gelu(x, approximate="tanh")),
        "silu": ((x,), lambda: torch_ops.silu(x)),
        "sigmoid": ((x,), lambda: torch_ops.sigmoid(x)),
        "tanh": ((x,), lambda: torch_ops.tanh(x)),
        "glu": ((x,), lambda: torch_ops.glu(x)),
        "swiglu": ((x,), lambda: torch_ops.swiglu(x)),
        "geglu": ((x,), lambda: torch_ops.geglu(x, 0)),
        "fused_linear_gelu": ((x, w, b), lambda: torch_ops.fused_linear(x, w, b, "gelu")),
        "fused_linear_relu": ((x, w, b), lambda: torch_ops.fused_linear(x, w, b, "relu")),
        "layer_norm": ((x, nw, nb), lambda: torch_ops.layer_norm(x, (96,), nw, nb)),
        "rms_norm": ((x, nw), lambda: torch_ops.rms_norm(x, (96,), nw)),
        "add_layer_norm": ((x, r, nw, nb), lambda: torch.cat(torch_ops.add_layer_norm(x, r, (96,), nw, nb))),
        "add_rms_norm": ((x, r, nw), lambda: torch.cat(torch_ops.add_rms_norm(x, r, (96,), nw))),
        "softmax": ((x,), lambda: torch_ops.softmax(x, 0)),
        "log_softmax": ((x,), lambda: torch_ops.log_softmax(x, -1)),
        "cross_entropy": ((x,), lambda: torch_ops.cross_entropy(x, t, label_smoothing=0.1, reduction="none")),
        "cross_entropy_probabilities": ((x,), lambda: torch_ops.cross_entropy(x, probs)),
        "linear_cross_entropy": ((x, w, b), lambda: torch_ops.linear_cross_entropy(x, w, t.clamp(max=63), b, chunk_size=700)),
        "scaled_dot_product_attention": ((q, k, v, am), lambda: torch_ops.scaled_dot_product_attention(q, k, v, am, enable_gqa=True)),
        "scaled_dot_product_attention_causal": ((q, k, v), lambda: torch_ops.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
    }


def _run(inputs, fn):
    """The call's result and the gradients of its inputs (of sum(y^2))."""
    y = fn()
    return (y.detach(), *torch.autograd.grad(y.square().sum(), inputs))


def test_concurrent_calls_from_python_threads():
    """Every op called at once from several Python threads (the bindings release the GIL)
    gives what it gives alone, forward and backward."""
    calls = _calls()
    expected = {k: _run(*c) for k, c in calls.items()}
    errors, barrier = [], threading.Barrier(6)

    def worker(names):
        try:
            barrier.wait()
            for _ in range(3):
                for k in names:
                    for got, exp in zip(_run(*calls[k]), expected[k]):
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


@pytest.mark.parametrize("name", list(_calls()))
def test_set_num_threads_one_gives_the_same_results(name):
    """One thread and torch's thread count give the same results (to float32 rounding: a
    reduction may be split differently); the same thread count gives bitwise the same."""
    inputs, fn = _calls()[name]
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, threads, 1):
            torch.set_num_threads(n)
            outs.append(_run(inputs, fn))
    finally:
        torch.set_num_threads(threads)
    for a, e in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)
    for a, e in zip(outs[2], outs[0]):
        assert torch.equal(a, e)  # the same thread count: bitwise the same


@pytest.mark.parametrize("name", list(_calls()))
def test_deterministic_mode_bitwise_run_to_run(name):
    """Under torch.use_deterministic_algorithms(True), two runs give bitwise the same
    values and gradients on CPU (no kernel of ours depends on scheduling)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        inputs, fn = _calls()[name]
        runs = [_run(inputs, fn) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(before)
    for run in runs[1:]:
        for a, e in zip(run, runs[0]):
            assert torch.equal(a, e)


# ----------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("name", list(MODELS))
def test_modules_save_load_and_deepcopy(tmp_path, name):
    model = _model(name)
    y = model(*_example(name))
    torch.save(model, tmp_path / "whole.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    whole = torch.load(tmp_path / "whole.pt", weights_only=False)
    fresh = MODELS[name]()  # another initialisation, then the saved state
    fresh.load_state_dict(torch.load(tmp_path / "state.pt"))
    for m in (whole, fresh, copy.deepcopy(model)):
        assert [type(a) for a in m.modules()] == [type(a) for a in model.modules()]
        assert repr(m) == repr(model)
        torch.testing.assert_close(m(*_example(name)), y)
