"""The CPU block cache behind torch_ops' large outputs (csrc/alloc.cpp): a freed output of
>= 4 MiB is kept and handed to the next output it fits, the cache is bounded and can be
emptied or turned off, and the tensors it makes behave like any other (resize_, threads)."""

import os
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

import torch_ops

BIG = 2**21  # float32 elements: 8 MiB, over the cache's 4 MiB threshold

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the block cache is Linux-only")


@pytest.fixture(autouse=True)
def _empty_cache():
    torch_ops.empty_cpu_cache()
    yield
    torch_ops.empty_cpu_cache()


def test_freed_output_is_reused():
    x = torch.randn(BIG)
    y = torch_ops.relu(x)
    ptr = y.data_ptr()
    assert torch_ops.cpu_cache_bytes() == 0
    del y
    assert torch_ops.cpu_cache_bytes() >= BIG * 4
    z = torch_ops.silu(x)
    assert z.data_ptr() == ptr
    assert torch_ops.cpu_cache_bytes() == 0
    torch.testing.assert_close(z, F.silu(x))  # the reused block holds the new result only


def test_live_outputs_do_not_share_memory():
    x = torch.randn(BIG)
    outs = [torch_ops.relu(x) for _ in range(3)]
    ptrs = {o.data_ptr() for o in outs}
    assert len(ptrs) == 3
    outs[0].fill_(1.0)
    torch.testing.assert_close(outs[1], F.relu(x))


def test_small_request_does_not_take_a_much_larger_block():
    torch_ops.relu(torch.randn(4 * BIG))  # a 32 MiB block is freed into the cache
    cached = torch_ops.cpu_cache_bytes()
    assert cached >= 4 * BIG * 4
    y = torch_ops.relu(torch.randn(BIG))  # 8 MiB: the 32 MiB block would waste 3/4 of itself
    assert torch_ops.cpu_cache_bytes() == cached
    del y
    assert torch_ops.cpu_cache_bytes() > cached


def test_empty_cpu_cache_releases_everything():
    for n in (BIG, 2 * BIG, 3 * BIG):
        torch_ops.relu(torch.randn(n))
    assert torch_ops.cpu_cache_bytes() > 0
    torch_ops.empty_cpu_cache()
    assert torch_ops.cpu_cache_bytes() == 0


def test_output_can_be_resized():
    x = torch.randn(BIG)
    y = torch_ops.relu(x)
    y.resize_(3 * BIG)  # grows: new storage from the same allocator, old contents kept
    torch.testing.assert_close(y[:BIG], F.relu(x))
    y.resize_(16)
    torch.testing.assert_close(y, F.relu(x[:16]))


def test_concurrent_allocations_are_correct():
    xs = [torch.randn(BIG) for _ in range(4)]
    errors = []

    def work(x):
        try:
            for _ in range(20):
                torch.testing.assert_close(torch_ops.sigmoid(x), torch.sigmoid(x))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


def test_capacity_zero_turns_the_cache_off():
    code = (
        "import torch, torch_ops\n"
        "x = torch.randn(2**21)\n"
        "y = torch_ops.relu(x); del y\n"
        "assert torch_ops.cpu_cache_bytes() == 0, torch_ops.cpu_cache_bytes()\n"
        "torch.testing.assert_close(torch_ops.relu(x), x.clamp_min(0))\n"
    )
    res = _run(code, TORCH_OPS_CPU_CACHE_MIB="0")
    assert res.returncode == 0, res.stderr


def test_capacity_bounds_what_is_kept():
    code = (
        "import torch, torch_ops\n"
        "ys = [torch_ops.relu(torch.randn(2**21)) for _ in range(4)]\n"  # 4 x 8 MiB live
        "del ys\n"
        "assert torch_ops.cpu_cache_bytes() == 16 << 20, torch_ops.cpu_cache_bytes()\n"
    )
    res = _run(code, TORCH_OPS_CPU_CACHE_MIB="16")
    assert res.returncode == 0, res.stderr


def test_bad_capacity_is_a_clear_error():
    code = "import torch, torch_ops\ntorch_ops.relu(torch.randn(2**21))\n"
    res = _run(code, TORCH_OPS_CPU_CACHE_MIB="lots")
    assert res.returncode != 0
    assert "TORCH_OPS_CPU_CACHE_MIB" in res.stderr
