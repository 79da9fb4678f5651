// The CPU kernels for x86-64 CPUs with AVX-512 (F, BW, VL, DQ) and FMA (see
// torch_ops/cpu_isa.h). ATen's 512-bit Vectorized is compiled here.
#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#endif
// g++ does not define the feature macros for a target pragma; the headers test them.
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define TORCH_OPS_ISA AVX512
#include "kernels/all.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
