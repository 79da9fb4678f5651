// The CPU kernels for any CPU torch runs on (see torch_ops/cpu_isa.h).
#include "kernels/prelude.h"

#define CPU_CAPABILITY DEFAULT
#define TORCH_OPS_ISA DEFAULT
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "kernels/all.h"
