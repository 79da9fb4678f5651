// Allocating the outputs of torch_ops' kernels.
//
// A fresh output of several MiB on CPU comes from mmap (glibc hands out big blocks that
// way and unmaps them on free), so the kernel that writes it first takes one page fault
// per 4 KiB page, and the OS zeroes every page: for a 64 MiB output that is 16384 faults,
// which cost more than the kernel's own work (measured here: filling a new 64 MiB tensor
// 34 ms, the same with huge pages 6 ms, copying into an existing one 15 ms under load).
//
// `empty_output` therefore takes CPU buffers of >= 4 MiB from a small cache of freed
// blocks (Linux): each block is a 2 MiB-aligned mapping advised to use transparent huge
// pages (madvise(MADV_HUGEPAGE), what PyTorch's own CPU allocator does under
// THP_MEM_ALLOC_ENABLE=1), and a freed block is kept for the next output it fits, up to
// TORCH_OPS_CPU_CACHE_MIB (default 256) in all; 0 turns the cache off (then plain
// at::empty plus the huge-page advice). TORCH_OPS_HUGE_PAGES=0 turns the advice off.
// torch_ops.empty_cpu_cache() unmaps the cached blocks. CUDA and small tensors: plain
// at::empty.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>

namespace torch_ops {

// at::empty(sizes, options), contiguous; on CPU, a buffer of >= 4 MiB comes from the
// block cache (above).
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// The advice alone, for a CPU tensor that was just allocated and is about to be written.
void advise_huge_pages(const at::Tensor& fresh);

// Bytes held by the block cache now (freed blocks waiting for reuse).
std::int64_t cpu_cache_bytes();

// Unmaps every cached block (tensors in use keep theirs).
void empty_cpu_cache();

}  // namespace torch_ops
