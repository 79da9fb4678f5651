// See include/torch_ops/alloc.h.
#include "torch_ops/alloc.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#define TORCH_OPS_BLOCK_CACHE 1
#else
#define TORCH_OPS_BLOCK_CACHE 0
#endif

namespace torch_ops {

namespace {

constexpr std::size_t kHugePage = std::size_t(1) << 21;  // 2 MiB, x86-64 and arm64 THP size
constexpr std::size_t kMinBytes = std::size_t(4) << 20;  // at least one whole huge page inside

bool env_flag(const char* name, bool fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  return std::strcmp(env, "0") != 0;
}

bool huge_pages_enabled() {
  static const bool enabled = env_flag("TORCH_OPS_HUGE_PAGES", true);
  return enabled;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

#if TORCH_OPS_BLOCK_CACHE

// The cache's capacity: TORCH_OPS_CPU_CACHE_MIB (default 256), 0 = no cache.
std::size_t cache_capacity() {
  static const std::size_t bytes = [] {
    const char* env = std::getenv("TORCH_OPS_CPU_CACHE_MIB");
    long long mib = 256;
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      mib = std::strtoll(env, &end, 10);
      TORCH_CHECK(end != env && *end == '\0' && mib >= 0,
                  "torch_ops: TORCH_OPS_CPU_CACHE_MIB must be a whole number of MiB >= 0, got '", env, "'");
    }
    return static_cast<std::size_t>(mib) << 20;
  }();
  return bytes;
}

// A mapping of `bytes` (a multiple of 2 MiB) starting on a 2 MiB boundary.
struct Block {
  void* base;
  std::size_t bytes;
};

Block map_block(std::size_t bytes) {
  // Map 2 MiB more than needed and unmap the ends, so that the block starts on a huge-page
  // boundary and all of it can be backed by huge pages.
  const std::size_t span = bytes + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TORCH_CHECK_WITH(OutOfMemoryError, raw != MAP_FAILED, "torch_ops: CPU out of memory, tried to allocate ",
                   bytes, " bytes (mmap failed: ", std::strerror(errno), ")");
  const auto begin = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = round_up(begin, kHugePage);
  const std::size_t head = aligned - begin, tail = span - head - bytes;
  if (head) munmap(raw, head);
  if (tail) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
#if defined(MADV_HUGEPAGE)
  if (huge_pages_enabled()) (void)madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
#endif
  return {reinterpret_cast<void*>(aligned), bytes};
}

// Large CPU outputs come from here. A freed block is kept (up to cache_capacity() bytes in
// all, least recently freed dropped first) and handed to the next request it fits without
// wasting more than a quarter of it, so a training loop that allocates the same big outputs
// every step stops paying mmap, one page fault per page and the kernel's zeroing of every
// page on each step (the same reason PyTorch's CUDA allocator caches). Requests under
// kMinBytes go to c10's CPU allocator. The object is never destroyed: tensors can be freed
// during interpreter shutdown, after static destructors have run.
class BlockCache final : public c10::Allocator {
 public:
  static BlockCache& get() {
    static BlockCache* cache = [] {
      auto* c = new BlockCache();
      // A child forked while another thread held the lock must not inherit it locked; its
      // copy of the cached blocks stays valid (copy-on-write).
      pthread_atfork(nullptr, nullptr, [] { new (&get().mutex_) std::mutex(); });
      return c;
    }();
    return *cache;
  }

  c10::DataPtr allocate(std::size_t n) override {
    if (n < kMinBytes) return c10::GetCPUAllocator()->allocate(n);
    const std::size_t bytes = round_up(n, kHugePage);
    Block block{nullptr, 0};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::size_t best = free_.size();
      for (std::size_t i = 0; i < free_.size(); ++i) {
        const std::size_t have = free_[i].bytes;
        if (have >= bytes && have - bytes <= have / 4 && (best == free_.size() || have < free_[best].bytes)) best = i;
      }
      if (best != free_.size()) {
        block = free_[best];
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
        cached_ -= block.bytes;
      }
    }
    if (block.base == nullptr) block = map_block(bytes);
    auto* ctx = new Block(block);
    return {block.base, ctx, &BlockCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  std::size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  void empty() {
    std::vector<Block> gone;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gone.swap(free_);
      cached_ = 0;
    }
    for (const Block& b : gone) munmap(b.base, b.bytes);
  }

 private:
  static void release(void* ctx) {
    const Block block = *static_cast<Block*>(ctx);
    delete static_cast<Block*>(ctx);
    get().give_back(block);
  }

  void give_back(const Block& block) {
    std::vector<Block> gone;
    const std::size_t capacity = cache_capacity();
    if (block.bytes > capacity) {
      gone.push_back(block);
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(block);
      cached_ += block.bytes;
      std::size_t drop = 0;
      while (cached_ > capacity) cached_ -= free_[drop++].bytes;
      gone.assign(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(drop));
      free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(drop));
    }
    for (const Block& b : gone) munmap(b.base, b.bytes);  // outside the lock
  }

  std::mutex mutex_;
  std::vector<Block> free_;  // least recently freed first
  std::size_t cached_ = 0;
};

#endif  // TORCH_OPS_BLOCK_CACHE

}  // namespace

void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!fresh.defined() || !fresh.device().is_cpu()) return;
  const std::size_t bytes = fresh.storage().nbytes();
  if (bytes < kMinBytes || !huge_pages_enabled()) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(fresh.storage().data());
  const std::uintptr_t first = round_up(begin, kHugePage);
  const std::uintptr_t last = (begin + bytes) & ~std::uintptr_t(kHugePage - 1);
  // Advice only: failure (THP disabled, an allocator that is not mmap-backed) changes nothing.
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)fresh;
#endif
}

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
#if TORCH_OPS_BLOCK_CACHE
  if (options.device().is_cpu() && !options.pinned_memory() && options.layout() == c10::kStrided &&
      cache_capacity() > 0) {
    return at::Tensor(at::detail::empty_generic(sizes, &BlockCache::get(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                     c10::typeMetaToScalarType(options.dtype()), std::nullopt));
  }
#endif
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out);
  return out;
}

std::int64_t cpu_cache_bytes() {
#if TORCH_OPS_BLOCK_CACHE
  return cache_capacity() > 0 ? static_cast<std::int64_t>(BlockCache::get().cached_bytes()) : 0;
#else
  return 0;
#endif
}

void empty_cpu_cache() {
#if TORCH_OPS_BLOCK_CACHE
  if (cache_capacity() > 0) BlockCache::get().empty();
#endif
}

}  // namespace torch_ops
