// The Python module torch_ops._C: what was built, and direct bindings for the eager path.
//
// Calling torch.ops.torch_ops.<op> parses arguments against the schema in Python-facing
// C++ (a few microseconds per call); these pybind11 bindings call the same dispatcher
// ops through cached typed handles instead, so eager calls pay less. Under
// torch.compile and for tensor subclasses / modes, torch_ops uses torch.ops (see
// torch_ops/_dispatch.py), and both paths end in the same kernels.
#include <torch/extension.h>

#include "torch_ops/alloc.h"
#include "torch_ops/build_config.h"
#include "torch_ops/cpu_isa.h"
#include "torch_ops/linear.h"
#include "torch_ops/ops.h"

namespace {

py::dict build_info() {
  py::dict d;
  d["version"] = TORCH_OPS_VERSION;
  d["built_with_torch"] = TORCH_OPS_BUILT_WITH_TORCH;
  d["cpu_kernels"] = true;
  d["cuda_kernels"] = static_cast<bool>(TORCH_OPS_WITH_CUDA);
  d["cuda_version"] = TORCH_OPS_WITH_CUDA ? py::object(py::str(TORCH_OPS_CUDA_VERSION)) : py::object(py::none());
  py::list archs;
  std::string all = TORCH_OPS_CUDA_ARCHS;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find(';', start);
    if (end == std::string::npos) end = all.size();
    if (end > start) archs.append(all.substr(start, end - start));
    start = end + 1;
  }
  d["cuda_archs"] = archs;
  d["cpu_isa"] = torch_ops::cpu::isa_name(torch_ops::cpu::isa());
  d["cpu_isa_hardware"] = torch_ops::cpu::isa_name(torch_ops::cpu::hardware_isa());
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "torch_ops compiled kernels; the ops themselves are torch.ops.torch_ops.*";
  m.def("build_info", &build_info, "What this library was built with.");
  m.def(
      "_set_cpu_isa",
      [](const std::string& name) {
        using torch_ops::cpu::Isa;
        const Isa cap = name == "avx512" ? Isa::Avx512 : name == "avx2" ? Isa::Avx2 : Isa::Default;
        TORCH_CHECK(name == "avx512" || name == "avx2" || name == "default",
                    "torch_ops: unknown CPU instruction set '", name, "' (default, avx2, avx512)");
        return std::string(torch_ops::cpu::isa_name(torch_ops::cpu::set_isa_cap(cap)));
      },
      "Cap the instruction set of the CPU kernels (tests, benchmarks); returns the one in use.");
  m.def("cpu_cache_bytes", &torch_ops::cpu_cache_bytes,
        "Bytes of freed large CPU outputs that torch_ops keeps for reuse (TORCH_OPS_CPU_CACHE_MIB).");
  m.def("empty_cpu_cache", &torch_ops::empty_cpu_cache,
        "Return the cached blocks of freed large CPU outputs to the OS.");
  // The GIL is released around every call, as torch's own bindings do.
  using release_gil = py::call_guard<py::gil_scoped_release>;
  // linear's eager entry: the op for the canonical (out, in) weight and (out,) or no bias,
  // None for the other shapes F.linear accepts (torch_ops/linear.py handles those), so the
  // common call needs no shape checks in Python.
  m.def(
      "linear",
      [](const at::Tensor& input, const at::Tensor& weight,
         const std::optional<at::Tensor>& bias) -> std::optional<at::Tensor> {
        if (weight.dim() != 2 || (bias.has_value() && (bias->dim() != 1 || bias->size(0) != weight.size(0))))
          return std::nullopt;
        return torch_ops::ops::linear(input, weight, bias);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), release_gil());

  // fused_linear (the activation string is checked by the op).
  m.def(
      "fused_linear",
      [](const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
         const std::optional<std::string>& activation) {
        return torch_ops::ops::fused_linear(
            input, weight, bias,
            activation.has_value() ? std::optional<c10::string_view>(*activation) : std::nullopt);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = py::none(),
      release_gil());

  // activation: the forward ops (in-place ones return self, the same Python object).
  namespace ops = torch_ops::ops;
  m.def("relu", &ops::relu, release_gil());
  m.def("relu_", &ops::relu_, release_gil());
  m.def("leaky_relu", &ops::leaky_relu, release_gil());
  m.def("leaky_relu_", &ops::leaky_relu_, release_gil());
  m.def(
      "gelu", [](const at::Tensor& x, const std::string& approximate) { return ops::gelu(x, approximate); },
      release_gil());
  m.def("silu", &ops::silu, release_gil());
  m.def("silu_", &ops::silu_, release_gil());
  m.def("sigmoid", &ops::sigmoid, release_gil());
  m.def("tanh", &ops::tanh, release_gil());
  m.def("glu", &ops::glu, release_gil());
  m.def("swiglu", &ops::swiglu, release_gil());
  m.def(
      "geglu",
      [](const at::Tensor& x, int64_t dim, const std::string& approximate) { return ops::geglu(x, dim, approximate); },
      release_gil());

  // norm: the forward ops' eager entries return the normalized output (and input +
  // residual for the add variants); mean / rstd stay in the autograd node.
  using Opt = std::optional<at::Tensor>;
  m.def(
      "layer_norm",
      [](const at::Tensor& x, const std::vector<int64_t>& ns, const Opt& w, const Opt& b, double eps) {
        return std::get<0>(ops::layer_norm(x, ns, w, b, eps));
      },
      release_gil());
  m.def(
      "rms_norm",
      [](const at::Tensor& x, const std::vector<int64_t>& ns, const Opt& w, std::optional<double> eps) {
        return std::get<0>(ops::rms_norm(x, ns, w, eps));
      },
      release_gil());
  m.def(
      "add_layer_norm",
      [](const at::Tensor& x, const at::Tensor& r, const std::vector<int64_t>& ns, const Opt& w, const Opt& b,
         double eps) {
        auto o = ops::add_layer_norm(x, r, ns, w, b, eps);
        return std::make_tuple(std::get<0>(o), std::get<1>(o));
      },
      release_gil());
  m.def(
      "add_rms_norm",
      [](const at::Tensor& x, const at::Tensor& r, const std::vector<int64_t>& ns, const Opt& w,
         std::optional<double> eps) {
        auto o = ops::add_rms_norm(x, r, ns, w, eps);
        return std::make_tuple(std::get<0>(o), std::get<1>(o));
      },
      release_gil());
}
