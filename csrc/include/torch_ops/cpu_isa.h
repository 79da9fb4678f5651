// CPU kernels compiled once per instruction set and chosen at run time, the way ATen does.
//
// A family's vectorised kernels live in csrc/cpu/kernels/<family>.h, inside
// `namespace torch_ops::cpu::TORCH_OPS_ISA`. csrc/cpu/isa_{default,avx2,avx512}.cpp include
// every such header once per instruction set, with the matching target and ATen's
// CPU_CAPABILITY macros, so `at::vec::Vectorized` is 256- or 512-bit wide there. A
// caller declares an entry point with TORCH_OPS_DECLARE_CPU_KERNEL and calls it through
// TORCH_OPS_CPU_KERNEL(name), which picks the best variant this CPU runs. The kernel files
// hold only the vector loops on raw pointers: no dispatch on dtype, no error strings, no
// allocation (those stay in csrc/cpu/<family>.cpp, compiled for the portable target).
#pragma once

namespace torch_ops::cpu {

enum class Isa { Default = 0, Avx2 = 1, Avx512 = 2 };

// The best instruction set this CPU supports among those compiled, capped by the
// environment variable TORCH_OPS_CPU_ISA (or torch's ATEN_CPU_CAPABILITY) when set to
// "default", "avx2" or "avx512". Computed once.
Isa isa();
const char* isa_name(Isa isa);
// The best instruction set this CPU could run, ignoring any cap.
Isa hardware_isa();
// Cap the instruction set from now on (tests and benchmarks of each variant); a cap above
// what the hardware runs is lowered to it. Returns the instruction set now in use.
Isa set_isa_cap(Isa cap);

}  // namespace torch_ops::cpu

// The per-ISA files need GCC/clang target pragmas; elsewhere only the portable variant.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define TORCH_OPS_X86 1
#else
#define TORCH_OPS_X86 0
#endif

// Declares a kernel (any declaration, templates included) in each variant's namespace.
#if TORCH_OPS_X86
#define TORCH_OPS_DECLARE_CPU_KERNEL(...) \
  namespace torch_ops::cpu {              \
  namespace DEFAULT {                     \
  __VA_ARGS__                             \
  }                                       \
  namespace AVX2 {                        \
  __VA_ARGS__                             \
  }                                       \
  namespace AVX512 {                      \
  __VA_ARGS__                             \
  }                                       \
  }
// The variant of kernel `name` for the instruction set in use (a function pointer).
#define TORCH_OPS_CPU_KERNEL(name) (::torch_ops::cpu::pick(&::torch_ops::cpu::DEFAULT::name, \
                                    &::torch_ops::cpu::AVX2::name, &::torch_ops::cpu::AVX512::name))
#else
#define TORCH_OPS_DECLARE_CPU_KERNEL(...) \
  namespace torch_ops::cpu {              \
  namespace DEFAULT {                     \
  __VA_ARGS__                             \
  }                                       \
  }
#define TORCH_OPS_CPU_KERNEL(name) (&::torch_ops::cpu::DEFAULT::name)
#endif

namespace torch_ops::cpu {
template <typename Fn>
inline Fn pick(Fn portable, Fn avx2, Fn avx512) {
  switch (isa()) {
    case Isa::Avx512:
      return avx512;
    case Isa::Avx2:
      return avx2;
    default:
      return portable;
  }
}
}  // namespace torch_ops::cpu
