"""How torch_ops._C is built: one description shared by ``setup.py`` and the JIT build.

``setup.py`` loads this file by path (it must not import the ``torch_ops`` package,
which would try to load ``_C``); ``torch_ops._load`` imports it to compile the
extension just in time when a source checkout has no built library.

Switches (environment variables):

* ``FORCE_CUDA=1``  build the CUDA kernels even when no GPU is visible (needs nvcc).
* ``FORCE_CPU=1``   build only the CPU kernels.
* ``TORCH_CUDA_ARCH_LIST``  CUDA architectures, e.g. ``"9.0"`` or ``"8.0;9.0+PTX"``.
* ``MAX_JOBS``      parallel compile jobs (ninja).
* ``CUDA_HOME``     the CUDA toolkit; found from ``nvcc`` on the PATH when unset.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

VERSION = "0.1.0"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
CUDA_SRC = os.path.join(ROOT, "cuda")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_toolkit(root: str | None) -> bool:
    return bool(root) and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def find_cuda_home() -> str | None:
    """The CUDA toolkit root, or None.

    torch guesses ``dirname(dirname(which nvcc))``, which is wrong when ``nvcc`` on the
    PATH is a wrapper script (``/usr/local/bin/nvcc``). Look for a root that really
    holds the toolkit's headers, and export it as ``CUDA_HOME`` *before*
    ``torch.utils.cpp_extension`` is imported (it reads the variable at import time).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if _is_toolkit(root):
            return root
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(nvcc)))
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in candidates:
        if _is_toolkit(root) and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return root
    return None


def prepare_cuda_env() -> str | None:
    home = find_cuda_home()
    if home and not _is_toolkit(os.environ.get("CUDA_HOME")):
        os.environ["CUDA_HOME"] = home
    return home


_CUDA_LIB_WHEELS = ("cuda_runtime", "cublas", "cusparse", "cusolver", "curand", "cufft", "cuda_nvrtc")


def nvidia_wheel_include_dirs() -> list[str]:
    """Headers shipped by the ``nvidia-*`` wheels that the pip CUDA build of torch uses.

    torch's CUDA headers include cublas_v2.h, cusparse.h, ... which a bare toolkit may
    lack; the wheels put them in ``site-packages/nvidia/cu13/include`` (cu12 on older
    torch) or ``site-packages/nvidia/<lib>/include``.
    """
    dirs: list[str] = []
    for entry in sys.path:
        base = os.path.join(entry or ".", "nvidia")
        if not os.path.isdir(base):
            continue
        found = sorted(glob.glob(os.path.join(base, "cu[0-9]*", "include")))  # cu13, cu12 bundles
        found += [os.path.join(base, lib, "include") for lib in _CUDA_LIB_WHEELS]  # one wheel per library
        for inc in found:
            if os.path.isdir(inc) and inc not in dirs:
                dirs.append(inc)
    return dirs


def want_cuda() -> tuple[bool, str]:
    """Whether to build the CUDA kernels, and why."""
    if _truthy("FORCE_CPU"):
        return False, "FORCE_CPU=1"
    import torch

    if torch.version.cuda is None:
        if _truthy("FORCE_CUDA"):
            raise RuntimeError(
                "torch_ops: FORCE_CUDA=1 but the installed torch "
                f"({torch.__version__}) is a CPU-only build; install a CUDA build of torch"
            )
        return False, f"torch {torch.__version__} is a CPU-only build"
    home = prepare_cuda_env()
    if _truthy("FORCE_CUDA"):
        if home is None:
            raise RuntimeError("torch_ops: FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        return True, "FORCE_CUDA=1"
    if home is None:
        return False, "no CUDA toolkit (nvcc) found"
    if not torch.cuda.is_available():
        return False, "no GPU visible (set FORCE_CUDA=1 to build the CUDA kernels anyway)"
    return True, "GPU visible and CUDA toolkit found"


def cuda_arch_list() -> list[str]:
    """The architectures nvcc will compile for, as torch computes them."""
    from torch.utils.cpp_extension import _get_cuda_arch_flags

    archs = []
    for flag in _get_cuda_arch_flags():
        # -gencode=arch=compute_90,code=sm_90  /  code=compute_90 (PTX)
        code = flag.split("code=")[-1]
        if code.startswith("sm_"):
            archs.append(_dotted(code[3:]))
        elif code.startswith("compute_"):
            archs.append(_dotted(code[8:]) + "+PTX")
    return archs


def _dotted(sm: str) -> str:
    """'90' -> '9.0', '100a' -> '10.0a': the spelling of TORCH_CUDA_ARCH_LIST."""
    suffix = sm[-1] if sm[-1].isalpha() else ""
    digits = sm[: len(sm) - len(suffix)]
    return f"{digits[:-1]}.{digits[-1]}{suffix}"


def sources(with_cuda: bool) -> list[str]:
    files = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    # The portable CPU kernels link first: an inline function that the AVX2/AVX-512 kernel
    # files also compiled for their instruction set then resolves to the portable copy.
    default = os.path.join(CSRC, "cpu", "isa_default.cpp")
    files.remove(default)
    files.insert(0, default)
    if with_cuda:
        files += sorted(glob.glob(os.path.join(CUDA_SRC, "**", "*.cu"), recursive=True))
    return files


def write_config_header(out_dir: str, with_cuda: bool, archs: list[str]) -> str:
    """Generate ``torch_ops/build_config.h``: what this build is, baked into the binary."""
    import torch

    path = os.path.join(out_dir, "torch_ops", "build_config.h")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = (
        "// Generated by torch_ops/_build.py. Do not edit.\n#pragma once\n"
        f'#define TORCH_OPS_VERSION "{VERSION}"\n'
        f'#define TORCH_OPS_BUILT_WITH_TORCH "{torch.__version__}"\n'
        f"#define TORCH_OPS_WITH_CUDA {1 if with_cuda else 0}\n"
        f'#define TORCH_OPS_CUDA_ARCHS "{";".join(archs)}"\n'
        f'#define TORCH_OPS_CUDA_VERSION "{torch.version.cuda or ""}"\n'
    )
    old = open(path).read() if os.path.exists(path) else None
    if old != text:  # keep the mtime when nothing changed, so ninja rebuilds nothing
        with open(path, "w") as f:
            f.write(text)
    return path


def openmp_flags() -> list[str]:
    """-fopenmp where torch's CPU parallelism is OpenMP (Linux wheels). at::parallel_for is
    an inline header function whose ``#pragma omp parallel`` is ignored without the flag:
    the CPU kernels would then run on one thread. Linked the same way, the extension needs
    libgomp.so.1, which the loader resolves to the copy torch has already loaded."""
    import sys

    import torch

    if sys.platform.startswith("linux") and "OpenMP" in torch.__config__.parallel_info() and not _truthy("NO_OPENMP"):
        return ["-fopenmp"]
    return []


def compile_args(with_cuda: bool, debug: bool = False) -> dict[str, list[str]]:
    opt = ["-O0", "-g"] if debug else ["-O3"]
    args = {"cxx": opt + openmp_flags() + ["-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas"]}
    if with_cuda:
        args["nvcc"] = opt + ["--expt-relaxed-constexpr"]
    return args


def include_dirs(gen_dir: str, with_cuda: bool) -> list[str]:
    dirs = [os.path.join(CSRC, "include"), gen_dir]
    if with_cuda:
        # The toolkit's own headers first; the wheels' only for what the toolkit lacks.
        home = prepare_cuda_env()
        if home:
            dirs.append(os.path.join(home, "include"))
        dirs += nvidia_wheel_include_dirs()
    return dirs
