// Every family's vectorised CPU kernels; included once per instruction set by
// csrc/cpu/isa_*.cpp. A new family adds its header here.
#include "linear.h"
#include "activation.h"
#include "softmax.h"
#include "norm.h"
#include "attention.h"
