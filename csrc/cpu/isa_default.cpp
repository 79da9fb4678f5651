// The CPU kernels for any CPU torch runs on (see torch_ops/cpu_isa.h).
#define CPU_CAPABILITY DEFAULT
#define TORCH_OPS_ISA DEFAULT
#include "kernels/all.h"
