// hienet::convolution: HIENet's equivariant convolution as one operator (gather the
// neighbours' features, 'uvu' tensor product with the edge spherical harmonics and per-edge
// path weights, sum onto the centres), and its backward. Torch-side declarations shared by
// the CPU implementation (convolution_cpu.cpp) and the autograd wrapper
// (convolution_autograd.cpp); the CUDA implementation (cuda/, README.md there) registers the
// same two schemas under TORCH_LIBRARY_IMPL(hienet, CUDA, m) and needs nothing else from here.
//
// Schemas (library.cpp):
//   convolution(Tensor x, Tensor sh, Tensor weight, Tensor edge_index, Tensor paths,
//               Tensor coefficients, int out_dim) -> Tensor
//   convolution_backward(Tensor grad_out, Tensor x, Tensor sh, Tensor weight,
//                        Tensor edge_index, Tensor paths, Tensor coefficients,
//                        bool[3] output_mask) -> (Tensor, Tensor, Tensor)
//
//   x            [N, x_dim]   node features (float32 or float64)
//   sh           [E, sh_dim]  per-edge spherical harmonics, same dtype
//   weight       [E, W]       per-edge path weights (the radial MLP's output), same dtype
//   edge_index   [2, E] int64 row 0: centre i (receives the message), row 1: neighbour j;
//                             any order (the operator sorts internally)
//   paths        [P, 8] int64 one row per path: mul, d1, d2, d3, x_offset, sh_offset,
//                             out_offset, weight_offset (e3nn layouts: channel-major
//                             u*d + m inside each slice; sh multiplicity 1)
//   coefficients [sum_p d1 d2 d3] C_p[i, j, k] row-major per path, path weight included,
//                             same dtype as x
//   returns      [N, out_dim] sum over edges of the messages at their centre
//
//   convolution_radial(Tensor x, Tensor sh, Tensor hidden, Tensor linear, Tensor edge_index,
//                      Tensor paths, Tensor coefficients, int out_dim) -> Tensor
//     = convolution(x, sh, hidden @ linear, ...), where hidden [E, H] is the radial MLP's last
//     hidden layer and linear [H, W] its output layer: its autograd saves hidden, not the
//     (E, W) weights, and multiplies again in the backward (the largest saved tensor of a
//     step, 575 MB for HIENet-V3 at 512 atoms in float32, for one matrix product per block).
//
// The backward returns (grad_x, grad_sh, grad_weight), undefined where output_mask is false.
// Both are differentiable (the autograd kernels express every derivative with these two
// operators), so forces can be trained on.
#ifndef HIENET_OPS_CONVOLUTION_H
#define HIENET_OPS_CONVOLUTION_H

#include <ATen/core/Tensor.h>

#include <array>
#include <string>
#include <tuple>

namespace hienet {
namespace ops {

constexpr int64_t kPathColumns = 8;

at::Tensor convolution_cpu(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                           const at::Tensor &edge_index, const at::Tensor &paths,
                           const at::Tensor &coefficients, int64_t out_dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_cpu(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> output_mask);

// The instruction set the CPU kernels use: "avx512", "avx2" or "baseline" (the best this CPU
// runs, or the environment variable HIENET_CPU_CAPABILITY).
std::string cpu_capability();

}    // namespace ops
}    // namespace hienet

#endif
