// The hienet operator library: schemas of the custom operators (TORCH_LIBRARY(hienet, m)).
// Implementations register per dispatch key in their own files: CPU (convolution_cpu.cpp),
// Autograd (convolution_autograd.cpp), later CUDA. Loaded by Python (hienet/ops.py), linked
// into the C++ runtime; exported files that use the operators name them in their metadata.
#include "convolution.h"

#include <torch/library.h>

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
}
