// activations: device-generic host code. Checks every argument, makes the inputs
// contiguous (a non-contiguous input is copied once; outputs are always contiguous),
// allocates the outputs and hands a Pointwise / Gated job to the device's launcher
// (csrc/cpu/activation.cpp, cuda/activation.cu).
#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/WrapDimUtils.h>
#include <torch/library.h>

#include "torch_ops/activation.h"
#include "torch_ops/alloc.h"
#include "torch_ops/checks.h"

namespace torch_ops::activation {

namespace {

struct Arg {
  const at::Tensor& t;
  const char* name;
};

// Every tensor argument: defined, floating, and of the first one's dtype, device and shape.
void check_args(const char* op, std::initializer_list<Arg> args) {
  const Arg& first = *args.begin();
  for (const Arg& a : args) {
    check_defined(a.t, op, a.name);
    check_floating(a.t, op, a.name);
    if (&a == &first) continue;
    check_same_dtype(first.t, first.name, a.t, a.name, op);
    check_same_device(first.t, first.name, a.t, a.name, op);
    TORCH_CHECK(a.t.sizes() == first.t.sizes(), "torch_ops.", op, ": expected ", a.name, " to have the shape of ",
                first.name, " ", first.t.sizes(), ", got ", a.t.sizes());
  }
}

Act gelu_act(c10::string_view approximate, const char* op) {
  if (approximate == "none") return Act::GeluErf;
  if (approximate == "tanh") return Act::GeluTanh;
  TORCH_CHECK(false, "torch_ops.", op, ": expected approximate to be 'none' or 'tanh', got '",
              std::string(approximate.data(), approximate.size()), "'");
}

// out = pass(ins...) elementwise; returns a new contiguous tensor of the inputs' shape.
at::Tensor pointwise(const char* op, Act act, Pass pass, double param, std::initializer_list<Arg> args) {
  check_args(op, args);
  const at::Tensor& first = args.begin()->t;
  auto out = empty_output(first.sizes(), first.options());
  if (out.numel() == 0) return out;
  const auto& launch = launchers_for(first, &Launchers::pointwise, op);
  Pointwise job{act, pass, param, first.scalar_type(), out.numel(), out.mutable_data_ptr(), {nullptr, nullptr, nullptr}};
  at::Tensor keep[3];  // the contiguous inputs live until the kernel has run
  int k = 0;
  for (const Arg& a : args) {
    keep[k] = a.t.contiguous();
    job.in[k] = keep[k].const_data_ptr();
    ++k;
  }
  job.device_index = first.device().index();
  launch.pointwise(job);
  return out;
}

// self = f(self). A non-contiguous self is computed in a contiguous copy and copied back.
at::Tensor& pointwise_(const char* op, Act act, double param, at::Tensor& self) {
  check_defined(self, op, "self");
  check_floating(self, op, "self");
  at::assert_no_internal_overlap(self);
  if (self.numel() == 0) return self;
  const auto& launch = launchers_for(self, &Launchers::pointwise, op);
  const bool contiguous = self.is_contiguous();
  at::Tensor work = contiguous ? self : self.contiguous();
  Pointwise job{act, Pass::Forward, param, self.scalar_type(), self.numel(), work.mutable_data_ptr(),
                {work.const_data_ptr(), nullptr, nullptr}};
  job.device_index = self.device().index();
  launch.pointwise(job);
  if (!contiguous) self.copy_(work);
  return self;
}

// ---------------------------------------------------------------------------------- gated

struct Split {
  int64_t dim, outer, half;
  std::vector<int64_t> half_sizes;  // the output's shape: size(dim) halved
};

Split split_of(const at::Tensor& input, int64_t dim, const char* op) {
  check_defined(input, op, "input");
  TORCH_CHECK(input.dim() >= 1, "torch_ops.", op, ": expected input to have at least 1 dimension (it is cut in two ",
              "along dim), got a 0-D tensor");
  check_floating(input, op, "input");
  const int64_t d = at::maybe_wrap_dim(dim, input.dim());
  const int64_t size = input.size(d);
  TORCH_CHECK(size % 2 == 0, "torch_ops.", op, ": expected input.size(", dim, ") to be even (the input is cut in two ",
              "halves along dim), got ", size, " (input shape ", input.sizes(), ")");
  Split s{d, 1, size / 2, std::vector<int64_t>(input.sizes().begin(), input.sizes().end())};
  for (int64_t i = 0; i < d; ++i) s.outer *= input.size(i);
  for (int64_t i = d + 1; i < input.dim(); ++i) s.half *= input.size(i);
  s.half_sizes[d] = size / 2;
  return s;
}

void check_half(const at::Tensor& t, const char* name, const at::Tensor& input, const Split& s, const char* op) {
  check_defined(t, op, name);
  check_floating(t, op, name);
  check_same_dtype(input, "input", t, name, op);
  check_same_device(input, "input", t, name, op);
  TORCH_CHECK(t.sizes() == at::IntArrayRef(s.half_sizes), "torch_ops.", op, ": expected ", name,
              " to have the shape of the output ", at::IntArrayRef(s.half_sizes), ", got ", t.sizes());
}

at::Tensor gated_forward(const char* op, Gate gate, const at::Tensor& input, int64_t dim) {
  const Split s = split_of(input, dim, op);
  auto out = empty_output(s.half_sizes, input.options());
  if (out.numel() == 0) return out;
  const auto x = input.contiguous();
  Gated job{gate, Pass::Forward, input.scalar_type(), s.outer, s.half, {out.mutable_data_ptr(), nullptr},
            {x.const_data_ptr(), nullptr, nullptr}};
  job.device_index = input.device().index();
  launchers_for(input, &Launchers::gated, op).gated(job);
  return out;
}

at::Tensor gated_backward(const char* op, Gate gate, const at::Tensor& grad_output, const at::Tensor& input,
                          int64_t dim) {
  const Split s = split_of(input, dim, op);
  check_half(grad_output, "grad_output", input, s, op);
  auto grad_input = empty_output(input.sizes(), input.options());
  if (grad_input.numel() == 0) return grad_input;
  const auto x = input.contiguous();
  const auto go = grad_output.contiguous();
  Gated job{gate, Pass::Backward, input.scalar_type(), s.outer, s.half, {grad_input.mutable_data_ptr(), nullptr},
            {go.const_data_ptr(), x.const_data_ptr(), nullptr}};
  job.device_index = input.device().index();
  launchers_for(input, &Launchers::gated, op).gated(job);
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> gated_double_backward(const char* op, Gate gate, const at::Tensor& grad_grad_input,
                                                         const at::Tensor& grad_output, const at::Tensor& input,
                                                         int64_t dim) {
  const Split s = split_of(input, dim, op);
  check_half(grad_output, "grad_output", input, s, op);
  check_defined(grad_grad_input, op, "grad_grad_input");
  check_same_dtype(input, "input", grad_grad_input, "grad_grad_input", op);
  check_same_device(input, "input", grad_grad_input, "grad_grad_input", op);
  TORCH_CHECK(grad_grad_input.sizes() == input.sizes(), "torch_ops.", op,
              ": expected grad_grad_input to have the shape of input ", input.sizes(), ", got ",
              grad_grad_input.sizes());
  auto d_grad_output = empty_output(s.half_sizes, input.options());
  auto d_input = empty_output(input.sizes(), input.options());
  if (d_input.numel() == 0) return {d_grad_output, d_input};
  const auto x = input.contiguous();
  const auto go = grad_output.contiguous();
  const auto gg = grad_grad_input.contiguous();
  Gated job{gate,
            Pass::DoubleBackward,
            input.scalar_type(),
            s.outer,
            s.half,
            {d_grad_output.mutable_data_ptr(), d_input.mutable_data_ptr()},
            {gg.const_data_ptr(), go.const_data_ptr(), x.const_data_ptr()}};
  job.device_index = input.device().index();
  launchers_for(input, &Launchers::gated, op).gated(job);
  return {d_grad_output, d_input};
}

Gate geglu_gate(c10::string_view approximate, const char* op) {
  return gelu_act(approximate, op) == Act::GeluErf ? Gate::GegluErf : Gate::GegluTanh;
}

}  // namespace

// ------------------------------------------------------------------------------ pointwise

at::Tensor relu(const at::Tensor& input) { return pointwise("relu", Act::Relu, Pass::Forward, 0, {{input, "input"}}); }
at::Tensor& relu_(at::Tensor& self) { return pointwise_("relu_", Act::Relu, 0, self); }
at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  return pointwise("relu_backward", Act::Relu, Pass::Backward, 0, {{grad_output, "grad_output"}, {result, "result"}});
}

at::Tensor leaky_relu(const at::Tensor& input, double negative_slope) {
  return pointwise("leaky_relu", Act::LeakyRelu, Pass::Forward, negative_slope, {{input, "input"}});
}
at::Tensor& leaky_relu_(at::Tensor& self, double negative_slope) {
  return pointwise_("leaky_relu_", Act::LeakyRelu, negative_slope, self);
}
at::Tensor leaky_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, double negative_slope) {
  return pointwise("leaky_relu_backward", Act::LeakyRelu, Pass::Backward, negative_slope,
                   {{grad_output, "grad_output"}, {input, "input"}});
}

at::Tensor gelu(const at::Tensor& input, c10::string_view approximate) {
  return pointwise("gelu", gelu_act(approximate, "gelu"), Pass::Forward, 0, {{input, "input"}});
}
at::Tensor gelu_backward(const at::Tensor& grad_output, const at::Tensor& input, c10::string_view approximate) {
  return pointwise("gelu_backward", gelu_act(approximate, "gelu_backward"), Pass::Backward, 0,
                   {{grad_output, "grad_output"}, {input, "input"}});
}
at::Tensor gelu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& input, c10::string_view approximate) {
  return pointwise("gelu_double_backward", gelu_act(approximate, "gelu_double_backward"), Pass::DoubleBackward, 0,
                   {{grad_grad_input, "grad_grad_input"}, {grad_output, "grad_output"}, {input, "input"}});
}

at::Tensor silu(const at::Tensor& input) { return pointwise("silu", Act::Silu, Pass::Forward, 0, {{input, "input"}}); }
at::Tensor& silu_(at::Tensor& self) { return pointwise_("silu_", Act::Silu, 0, self); }
at::Tensor silu_backward(const at::Tensor& grad_output, const at::Tensor& input) {
  return pointwise("silu_backward", Act::Silu, Pass::Backward, 0, {{grad_output, "grad_output"}, {input, "input"}});
}
at::Tensor silu_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& input) {
  return pointwise("silu_double_backward", Act::Silu, Pass::DoubleBackward, 0,
                   {{grad_grad_input, "grad_grad_input"}, {grad_output, "grad_output"}, {input, "input"}});
}

at::Tensor sigmoid(const at::Tensor& input) {
  return pointwise("sigmoid", Act::Sigmoid, Pass::Forward, 0, {{input, "input"}});
}
at::Tensor sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  return pointwise("sigmoid_backward", Act::Sigmoid, Pass::Backward, 0,
                   {{grad_output, "grad_output"}, {result, "result"}});
}
at::Tensor sigmoid_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                   const at::Tensor& result) {
  return pointwise("sigmoid_double_backward", Act::Sigmoid, Pass::DoubleBackward, 0,
                   {{grad_grad_input, "grad_grad_input"}, {grad_output, "grad_output"}, {result, "result"}});
}

at::Tensor tanh(const at::Tensor& input) { return pointwise("tanh", Act::Tanh, Pass::Forward, 0, {{input, "input"}}); }
at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  return pointwise("tanh_backward", Act::Tanh, Pass::Backward, 0, {{grad_output, "grad_output"}, {result, "result"}});
}
at::Tensor tanh_double_backward(const at::Tensor& grad_grad_input, const at::Tensor& grad_output,
                                const at::Tensor& result) {
  return pointwise("tanh_double_backward", Act::Tanh, Pass::DoubleBackward, 0,
                   {{grad_grad_input, "grad_grad_input"}, {grad_output, "grad_output"}, {result, "result"}});
}

// ---------------------------------------------------------------------------------- gated

at::Tensor glu(const at::Tensor& input, int64_t dim) { return gated_forward("glu", Gate::Glu, input, dim); }
at::Tensor glu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  return gated_backward("glu_backward", Gate::Glu, grad_output, input, dim);
}
std::tuple<at::Tensor, at::Tensor> glu_double_backward(const at::Tensor& grad_grad_input,
                                                       const at::Tensor& grad_output, const at::Tensor& input,
                                                       int64_t dim) {
  return gated_double_backward("glu_double_backward", Gate::Glu, grad_grad_input, grad_output, input, dim);
}

at::Tensor swiglu(const at::Tensor& input, int64_t dim) { return gated_forward("swiglu", Gate::Swiglu, input, dim); }
at::Tensor swiglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim) {
  return gated_backward("swiglu_backward", Gate::Swiglu, grad_output, input, dim);
}
std::tuple<at::Tensor, at::Tensor> swiglu_double_backward(const at::Tensor& grad_grad_input,
                                                          const at::Tensor& grad_output, const at::Tensor& input,
                                                          int64_t dim) {
  return gated_double_backward("swiglu_double_backward", Gate::Swiglu, grad_grad_input, grad_output, input, dim);
}

at::Tensor geglu(const at::Tensor& input, int64_t dim, c10::string_view approximate) {
  return gated_forward("geglu", geglu_gate(approximate, "geglu"), input, dim);
}
at::Tensor geglu_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t dim,
                          c10::string_view approximate) {
  return gated_backward("geglu_backward", geglu_gate(approximate, "geglu_backward"), grad_output, input, dim);
}
std::tuple<at::Tensor, at::Tensor> geglu_double_backward(const at::Tensor& grad_grad_input,
                                                         const at::Tensor& grad_output, const at::Tensor& input,
                                                         int64_t dim, c10::string_view approximate) {
  return gated_double_backward("geglu_double_backward", geglu_gate(approximate, "geglu_double_backward"),
                               grad_grad_input, grad_output, input, dim);
}

void register_kernels(torch::Library& m) {
  m.impl("relu", &relu);
  m.impl("relu_", &relu_);
  m.impl("relu_backward", &relu_backward);
  m.impl("leaky_relu", &leaky_relu);
  m.impl("leaky_relu_", &leaky_relu_);
  m.impl("leaky_relu_backward", &leaky_relu_backward);
  m.impl("gelu", &gelu);
  m.impl("gelu_backward", &gelu_backward);
  m.impl("gelu_double_backward", &gelu_double_backward);
  m.impl("silu", &silu);
  m.impl("silu_", &silu_);
  m.impl("silu_backward", &silu_backward);
  m.impl("silu_double_backward", &silu_double_backward);
  m.impl("sigmoid", &sigmoid);
  m.impl("sigmoid_backward", &sigmoid_backward);
  m.impl("sigmoid_double_backward", &sigmoid_double_backward);
  m.impl("tanh", &tanh);
  m.impl("tanh_backward", &tanh_backward);
  m.impl("tanh_double_backward", &tanh_double_backward);
  m.impl("glu", &glu);
  m.impl("glu_backward", &glu_backward);
  m.impl("glu_double_backward", &glu_double_backward);
  m.impl("swiglu", &swiglu);
  m.impl("swiglu_backward", &swiglu_backward);
  m.impl("swiglu_double_backward", &swiglu_double_backward);
  m.impl("geglu", &geglu);
  m.impl("geglu_backward", &geglu_backward);
  m.impl("geglu_double_backward", &geglu_double_backward);
}

}  // namespace torch_ops::activation
