// See include/torch_ops/alloc.h.
#include "torch_ops/alloc.h"

#include <ATen/ops/empty.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace torch_ops {

namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t(1) << 21;  // 2 MiB, x86-64 and arm64 THP size
constexpr std::size_t kMinBytes = std::size_t(4) << 20;         // at least one whole huge page inside

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("TORCH_OPS_HUGE_PAGES");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

}  // namespace

void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!fresh.defined() || !fresh.device().is_cpu()) return;
  const std::size_t bytes = fresh.storage().nbytes();
  if (bytes < kMinBytes || !huge_pages_enabled()) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(fresh.storage().data());
  const std::uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  // Advice only: failure (THP disabled, an allocator that is not mmap-backed) changes nothing.
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)fresh;
#endif
}

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out);
  return out;
}

}  // namespace torch_ops
