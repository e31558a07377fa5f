// hienet::convolution and hienet::convolution_backward on CUDA tensors
// (TORCH_LIBRARY_IMPL(hienet, CUDA)): the shared torch side (convolution_launch.cpp) with the
// kernels of convolution_kernels.cu launched on the current stream of x's device. The autograd
// kernels (convolution_autograd.cpp) express every derivative with these two operators, so the
// backward and the double backward (training on forces) run here too.
//
// Only c10's CUDA headers are used (CUDAStream.h, CUDAGuard.h): ATen/cuda/CUDAContext.h pulls
// in cuBLAS/cuSPARSE headers that a minimal CUDA toolkit lacks.
#include "convolution_launch.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <mutex>
#include <vector>

namespace hienet {
namespace ops {
namespace gpu {

namespace {

void check_launch(int status, const char *what)
{
  TORCH_CHECK(status == 0, "hienet::convolution: the CUDA ", what, " kernel failed to launch: ",
              cudaGetErrorString(static_cast<cudaError_t>(status)));
}

class CudaLauncher final : public Launcher {
 public:
  const char *where() const override { return "CUDA"; }
  bool on_device(const at::Tensor &t) const override { return t.device().is_cuda(); }

  int64_t max_shared_bytes(c10::Device device) const override
  {
    static std::mutex mutex;
    static std::vector<int64_t> known;
    std::lock_guard<std::mutex> lock(mutex);
    const size_t index = static_cast<size_t>(device.index());
    if (index >= known.size()) known.resize(index + 1, 0);
    if (known[index] == 0) {
      int bytes = 0;
      const cudaError_t status =
          cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device.index());
      TORCH_CHECK(status == cudaSuccess, "hienet::convolution: cannot query the shared memory of ",
                  device, ": ", cudaGetErrorString(status));
      known[index] = bytes;
    }
    return known[index];
  }

  void forward(const ForwardParams<float> &a, const LaunchShape &s) override
  {
    check_launch(cuda_forward(a, s, stream()), "forward");
  }
  void forward(const ForwardParams<double> &a, const LaunchShape &s) override
  {
    check_launch(cuda_forward(a, s, stream()), "forward");
  }
  void backward(const BackwardParams<float> &a, const LaunchShape &s) override
  {
    check_launch(cuda_backward(a, s, stream()), "backward");
  }
  void backward(const BackwardParams<double> &a, const LaunchShape &s) override
  {
    check_launch(cuda_backward(a, s, stream()), "backward");
  }

 private:
  static void *stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
};

at::Tensor convolution_cuda(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                            const at::Tensor &edge_index, const at::Tensor &paths,
                            const at::Tensor &coefficients, int64_t out_dim)
{
  TORCH_CHECK(x.is_cuda(), "hienet::convolution: x must be a CUDA tensor when any input is, got ",
              x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  CudaLauncher launcher;
  return convolution(launcher, x, sh, weight, edge_index, paths, coefficients, out_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_cuda(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> output_mask)
{
  TORCH_CHECK(x.is_cuda(), "hienet::convolution: x must be a CUDA tensor when any input is, got ",
              x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  CudaLauncher launcher;
  return convolution_backward(launcher, grad_out, x, sh, weight, edge_index, paths, coefficients,
                              output_mask);
}

}    // namespace

TORCH_LIBRARY_IMPL(hienet, CUDA, m)
{
  m.impl("convolution", &convolution_cuda);
  m.impl("convolution_backward", &convolution_backward_cuda);
}

}    // namespace gpu
}    // namespace ops
}    // namespace hienet
