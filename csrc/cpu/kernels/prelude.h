// Everything the vectorised kernel headers need that is *not* at::vec, included by
// csrc/cpu/isa_*.cpp before they switch the instruction set. Inline functions of these
// headers are then compiled for the portable target in every file, so whichever copy the
// linker keeps runs on any CPU: only at::vec (in its per-ISA namespace) and our kernels
// (in torch_ops::cpu::<ISA>) are compiled for AVX2/AVX-512. scripts/check_isa_objects.py
// verifies that on the built library (CI runs it).
//
// Headers of templates that the kernels instantiate with vector types (the *_math.h
// formulas) are included by the kernel headers themselves, after the switch: a template
// is compiled for the target where it is defined. Their scalar instantiations are inlined
// into the kernels (the check would see an out-of-line copy).
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/NumericUtils.h>
#include <ATen/OpMathType.h>
#include <ATen/native/Math.h>
#include <ATen/native/cpu/zmath.h>
#include <ATen/native/quantized/AffineQuantizerBase.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <c10/util/Load.h>
#include <c10/util/MathConstants.h>
#include <c10/util/TypeCast.h>
#include <c10/util/bit_cast.h>
#include <c10/util/complex.h>
#include <c10/util/copysign.h>
#include <c10/util/irange.h>
#include <c10/util/qint32.h>
#include <c10/util/qint8.h>
#include <c10/util/quint8.h>

#include <ATen/Parallel.h>

#include "torch_ops/activation.h"
#include "torch_ops/attention.h"
#include "torch_ops/attention_math.h"
#include "torch_ops/cpu_isa.h"
#include "torch_ops/linear.h"
#include "torch_ops/norm.h"
#include "torch_ops/reduce_math.h"
#include "torch_ops/softmax.h"

namespace torch_ops::cpu {

// An allocator of cache-line-aligned (64-byte) storage, for the kernels' scratch tiles: a
// tile whose rows start on a cache line keeps the vector loads and stores of the row work
// and of the BLAS kernels that read and write it from straddling lines (a std::vector of a
// large tile is a fresh mapping offset by malloc's 16-byte header).
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>&) const noexcept { return false; }
};

template <typename T>
using AlignedBuffer = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace torch_ops::cpu
