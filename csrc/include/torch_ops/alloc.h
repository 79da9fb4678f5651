// Allocating the outputs of torch_ops' kernels.
//
// A fresh output of several MiB on CPU comes from mmap (glibc hands out big blocks that
// way and unmaps them on free), so the kernel that writes it first takes one page fault
// per 4 KiB page: for a 64 MiB output that is 16384 faults, which cost more than the
// kernel's own work (measured here: filling a new 64 MiB tensor 34 ms, the same with huge
// pages 6 ms, copying into an existing one 15 ms under load). `empty_output` asks the
// kernel to back the 2 MiB-aligned interior of such buffers with transparent huge pages
// (madvise(MADV_HUGEPAGE); a no-op where THP is off or not Linux), the same thing that
// PyTorch's own CPU allocator does under THP_MEM_ALLOC_ENABLE=1. TORCH_OPS_HUGE_PAGES=0
// turns it off. CUDA and small tensors: plain at::empty.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

namespace torch_ops {

// at::empty(sizes, options); on CPU, a buffer of >= 4 MiB is advised to use huge pages.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// The advice alone, for a CPU tensor that was just allocated and is about to be written.
void advise_huge_pages(const at::Tensor& fresh);

}  // namespace torch_ops
