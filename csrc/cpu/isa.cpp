// Choosing the instruction set of the CPU kernels at run time (see torch_ops/cpu_isa.h).
#include "torch_ops/cpu_isa.h"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace torch_ops::cpu {
namespace {

Isa detect() {
#if TORCH_OPS_X86 && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::Avx2;
#endif
  return Isa::Default;
}

Isa cap_from_env() {
  for (const char* var : {"TORCH_OPS_CPU_ISA", "ATEN_CPU_CAPABILITY"}) {
    const char* v = std::getenv(var);
    if (!v || !*v) continue;
    std::string s(v);
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "default") return Isa::Default;
    if (s == "avx2") return Isa::Avx2;
    if (s == "avx512") return Isa::Avx512;
    std::fprintf(stderr, "torch_ops: ignoring %s=%s (expected default, avx2 or avx512)\n", var, v);
  }
  return Isa::Avx512;
}

Isa lower(Isa a, Isa b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

std::atomic<int>& current() {
  static std::atomic<int> chosen{static_cast<int>(lower(detect(), cap_from_env()))};
  return chosen;
}

}  // namespace

Isa hardware_isa() {
  static const Isa hw = detect();
  return hw;
}

Isa isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }

Isa set_isa_cap(Isa cap) {
  current().store(static_cast<int>(lower(hardware_isa(), cap)));
  return isa();
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "default";
  }
}

}  // namespace torch_ops::cpu
