// The CPU kernels for x86-64 CPUs with AVX2 and FMA (see torch_ops/cpu_isa.h). The target
// pragma comes before every include, so ATen's 256-bit Vectorized is compiled here.
// Inline functions of the headers are compiled for AVX2 here too: setup.py links
// isa_default.cpp first, so where both define one the linker keeps the portable copy.
#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
// g++ does not define the feature macros for a target pragma; the headers test them.
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define TORCH_OPS_ISA AVX2
#include "kernels/all.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
