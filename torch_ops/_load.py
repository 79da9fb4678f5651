"""Finding the compiled library torch_ops._C, or building it just in time.

* An installed build (``pip install --no-build-isolation .`` or ``-e .``) is imported.
* A source checkout with no built library is compiled once with
  ``torch.utils.cpp_extension.load`` (ninja, cached per torch version and CPU/CUDA).
* A library built against another torch, or one that fails to load, raises ImportError
  with the command that fixes it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import torch

REBUILD = "pip install --no-build-isolation -e .  (from the torch_ops source directory)"


def _source_checkout() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "setup.py")) and os.path.isdir(os.path.join(root, "csrc")):
        return root
    return None


def _check_version(lib, where: str):
    built = lib.build_info()["built_with_torch"]
    if built != torch.__version__:
        raise ImportError(
            f"torch_ops: {where} was built against torch {built}, but torch {torch.__version__} is "
            f"installed. Rebuild it for this torch: {REBUILD}, or reinstall with "
            "`pip install --no-build-isolation --force-reinstall .`"
        )
    return lib


def _jit_build(root: str):
    from . import _build

    with_cuda, why = _build.want_cuda()
    from torch.utils.cpp_extension import load

    kind = "cuda" if with_cuda else "cpu"
    cache = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch_extensions"
    )
    build_dir = os.path.join(cache, f"torch_ops-{_build.VERSION}-torch{torch.__version__}-{kind}")
    os.makedirs(build_dir, exist_ok=True)
    gen = os.path.join(build_dir, "generated")
    archs = _build.cuda_arch_list() if with_cuda else []
    _build.write_config_header(gen, with_cuda, archs)
    print(
        f"torch_ops: no built library in {root}; compiling the {kind.upper()} kernels just in time "
        f"({why}; cached in {build_dir}) ...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    lib = load(
        name="torch_ops_C",
        sources=_build.sources(with_cuda),
        extra_include_paths=_build.include_dirs(gen, with_cuda),
        extra_cflags=_build.compile_args(with_cuda)["cxx"],
        extra_cuda_cflags=_build.compile_args(with_cuda).get("nvcc"),
        extra_ldflags=_build.openmp_flags(),
        build_directory=build_dir,
        with_cuda=with_cuda,
        verbose=False,
    )
    if time.perf_counter() - t0 > 5:
        print(f"torch_ops: built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return lib


def load_library():
    """Return the compiled torch_ops._C module (its import registers the ops)."""
    if importlib.util.find_spec("torch_ops._C") is None:
        root = _source_checkout()
        if root is None:
            raise ImportError(
                "torch_ops: the compiled library torch_ops._C is missing from this installation; "
                "reinstall with `pip install --no-build-isolation --force-reinstall torch_ops` "
                "(or from a source checkout: " + REBUILD + ")"
            )
        return _check_version(_jit_build(root), "the just-in-time build")
    try:
        from . import _C
    except ImportError as e:
        raise ImportError(
            f"torch_ops: the compiled library torch_ops._C failed to load ({e}). This usually means it "
            f"was built against another torch than the installed {torch.__version__}. Rebuild: {REBUILD}"
        ) from e
    return _check_version(_C, "torch_ops._C")
