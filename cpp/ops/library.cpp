// The hienet operator library: schemas of the custom operators (TORCH_LIBRARY(hienet, m)).
// Implementations register per dispatch key in their own files: CPU (convolution_cpu.cpp),
// Autograd (convolution_autograd.cpp), CUDA (cuda/convolution_cuda.cpp, when built with CUDA). Loaded by Python (hienet/ops.py), linked
// into the C++ runtime; exported files that use the operators name them in their metadata.
#include "convolution.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/TensorOptions.h>
#include <torch/library.h>

namespace {

// True when hienet::convolution and its backward have kernels for tensors on `device`: always
// on the CPU, on a GPU when this library was built with CUDA kernels. The model asks this
// before it uses the fused convolution on a device, and falls back to e3nn where it is false.
bool convolution_available(c10::Device device)
{
  const c10::DispatchKey key = c10::computeDispatchKey(std::nullopt, std::nullopt, device);
  for (const char *name : {"hienet::convolution", "hienet::convolution_backward"}) {
    const auto op = c10::Dispatcher::singleton().findSchema({name, ""});
    if (!op || !op->hasKernelForDispatchKey(key)) return false;
  }
  return true;
}

}    // namespace

TORCH_LIBRARY(hienet, m)
{
  m.def(
      "convolution(Tensor x, Tensor sh, Tensor weight, Tensor edge_index, Tensor paths, "
      "Tensor coefficients, int out_dim) -> Tensor");
  m.def(
      "convolution_backward(Tensor grad_out, Tensor x, Tensor sh, Tensor weight, "
      "Tensor edge_index, Tensor paths, Tensor coefficients, bool[3] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
  // convolution with weight = hidden @ linear (the radial MLP's last layer) made inside: the
  // (E, W) weights are not kept for the backward but made again there (convolution.h)
  m.def(
      "convolution_radial(Tensor x, Tensor sh, Tensor hidden, Tensor linear, Tensor edge_index, "
      "Tensor paths, Tensor coefficients, int out_dim) -> Tensor");
  // Which CPU kernels (instruction set) the convolution uses, for benchmarks and bug reports.
  m.def("cpu_capability() -> str", &hienet::ops::cpu_capability);
  m.def("convolution_available(Device device) -> bool", &convolution_available);
}
