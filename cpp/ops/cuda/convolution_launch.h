// The torch side of the GPU kernels of hienet::convolution, shared by the CUDA operator
// (convolution_cuda.cpp) and the emulated one the tests run on the CPU
// (convolution_emulated.cpp): input checks (the CPU operator's, with its messages), the plan
// table, edges sorted by centre / neighbour with torch's stable sort on the tensors' device,
// outputs, launch shape. Only the launch itself differs, behind `Launcher`.
#ifndef HIENET_OPS_CUDA_CONVOLUTION_LAUNCH_H
#define HIENET_OPS_CUDA_CONVOLUTION_LAUNCH_H

#include "convolution_kernels.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace hienet {
namespace ops {
namespace gpu {

class Launcher {
 public:
  virtual ~Launcher() = default;
  // "CUDA" or "CPU": where the tensors must be (error messages, device checks)
  virtual const char *where() const = 0;
  virtual bool on_device(const at::Tensor &t) const = 0;
  // the most dynamic shared memory a block may have on `device`
  virtual int64_t max_shared_bytes(c10::Device device) const = 0;
  // outputs the kernels write in full: the emulated launcher fills them with NaN first
  virtual void poison(at::Tensor &t) const {}
  virtual void forward(const ForwardParams<float> &params, const LaunchShape &shape) = 0;
  virtual void forward(const ForwardParams<double> &params, const LaunchShape &shape) = 0;
  virtual void backward(const BackwardParams<float> &params, const LaunchShape &shape) = 0;
  virtual void backward(const BackwardParams<double> &params, const LaunchShape &shape) = 0;

  // Tests only (the emulated operator): threads per block and edges per tile (0: automatic).
  int threads = 0;
  int tile = 0;
};

at::Tensor convolution(Launcher &launcher, const at::Tensor &x, const at::Tensor &sh,
                       const at::Tensor &weight, const at::Tensor &edge_index,
                       const at::Tensor &paths, const at::Tensor &coefficients, int64_t out_dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    Launcher &launcher, const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> output_mask);

// Shared memory a block may use when the device allows more (more means fewer blocks per SM).
constexpr int64_t kSharedBudget = 64 * 1024;
// Most edges per tile (a centre's edges beyond it are summed in further tiles).
constexpr int kMaxTile = 32;

}    // namespace gpu
}    // namespace ops
}    // namespace hienet

#endif
