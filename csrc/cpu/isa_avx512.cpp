// The CPU kernels for x86-64 CPUs with AVX-512 (F, BW, VL, DQ), FMA and F16C (see
// torch_ops/cpu_isa.h). The portable headers come first (kernels/prelude.h); then the
// target switches, and ATen's 512-bit Vectorized and our kernels are compiled for it.
#include "kernels/prelude.h"

#if TORCH_OPS_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// g++ does not define the feature macros for a target pragma; sleef.h and ATen test them.
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
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "kernels/all.h"
#pragma GCC pop_options
#endif
