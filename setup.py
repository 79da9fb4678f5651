"""Build torch_ops._C: the C++ kernels in csrc/ always, the CUDA kernels in cuda/ when
CUDA is built. Which one, and every switch, is decided in torch_ops/_build.py."""

import importlib.util
import os

from setuptools import find_packages, setup

_spec = importlib.util.spec_from_file_location(
    "torch_ops_build", os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_ops", "_build.py")
)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

WITH_CUDA, WHY = build.want_cuda()  # sets CUDA_HOME before cpp_extension reads it

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

ARCHS = build.cuda_arch_list() if WITH_CUDA else []
GEN_DIR = os.path.join(build.ROOT, "build", "generated")
build.write_config_header(GEN_DIR, WITH_CUDA, ARCHS)
print(f"torch_ops: building {'CPU + CUDA (' + ';'.join(ARCHS) + ')' if WITH_CUDA else 'CPU only'} kernels: {WHY}")

Extension = CUDAExtension if WITH_CUDA else CppExtension
ext = Extension(
    name="torch_ops._C",
    sources=[os.path.relpath(s, build.ROOT) for s in build.sources(WITH_CUDA)],
    include_dirs=build.include_dirs(GEN_DIR, WITH_CUDA),
    extra_compile_args=build.compile_args(WITH_CUDA, debug=build._truthy("DEBUG")),
    extra_link_args=build.openmp_flags(),
)

setup(
    name="torch_ops",
    version=build.VERSION,
    packages=find_packages(include=["torch_ops", "torch_ops.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
