// The per-device launcher registry of a family. A family's `Launchers` is a struct of
// function pointers: the host functions that run its kernels on one device type.
// csrc/cpu/<family>.cpp and cuda/<family>.cu set theirs when the library loads
// (`launchers(c10::DeviceType::CPU) = Launchers{...}`); the device-independent host code
// (csrc/<family>.cpp) looks them up by the device of its tensors, so it never names a
// backend and builds without CUDA.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>

namespace torch_ops {

// The registry of Launchers for one device type (one per Launchers type: an inline
// template's statics are one object in the library).
template <typename Launchers>
Launchers& device_launchers(c10::DeviceType device) {
  static Launchers cpu, cuda, none;
  if (device == c10::DeviceType::CPU) return cpu;
  if (device == c10::DeviceType::CUDA) return cuda;
  return none;
}

// The launchers of t's device, whose member `launcher` is set; a clear error otherwise
// (a device without kernels, or CUDA tensors in a build without CUDA).
template <typename Launchers, typename Fn>
const Launchers& launchers_for(const at::Tensor& t, Fn Launchers::*launcher, const char* op) {
  const Launchers& l = device_launchers<Launchers>(t.device().type());
  TORCH_CHECK(l.*launcher != nullptr, "torch_ops.", op, ": no kernel for device ", t.device());
  return l;
}

}  // namespace torch_ops
