// CUDA kernels of hienet::convolution: the block bodies of convolution_body.h, one CUDA block
// per centre (forward) or neighbour (backward), __syncthreads() after every phase. No torch
// headers here (convolution_cuda.cpp is the torch side), so this file compiles quickly and
// with any C++ standard nvcc supports.
#include "convolution_kernels.h"

#include <cuda_runtime.h>

namespace hienet {
namespace ops {
namespace gpu {

namespace {

// Runs a phase on this thread, then waits for the block: what the emulated launcher does
// with loops over the threads.
struct DeviceRun {
  template <class Phase>
  __device__ void operator()(const Phase &phase) const
  {
    phase(static_cast<int>(threadIdx.x));
    __syncthreads();
  }
};

extern __shared__ __align__(16) unsigned char hienet_shared[];

template <typename T, int MAXD>
__global__ void __launch_bounds__(kMaxThreads) forward_kernel(const ForwardParams<T> params)
{
  forward_block<T, MAXD>(params, static_cast<int64_t>(blockIdx.x), static_cast<int>(blockDim.x),
                         hienet_shared, DeviceRun{});
}

template <typename T, int MAXD>
__global__ void __launch_bounds__(kMaxThreads) backward_kernel(const BackwardParams<T> params)
{
  backward_block<T, MAXD>(params, static_cast<int64_t>(blockIdx.x), static_cast<int>(blockDim.x),
                          hienet_shared, DeviceRun{});
}

// Dynamic shared memory above 48 KiB needs the kernel's consent, once per size increase.
template <typename Kernel>
cudaError_t allow_shared(Kernel kernel, int64_t bytes)
{
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <typename Kernel, typename Params>
int launch(Kernel kernel, const Params &params, const LaunchShape &shape, void *stream)
{
  cudaError_t status = allow_shared(kernel, shape.shared_bytes);
  if (status != cudaSuccess) return static_cast<int>(status);
  if (shape.blocks == 0) return 0;
  kernel<<<static_cast<unsigned int>(shape.blocks), shape.threads,
           static_cast<size_t>(shape.shared_bytes), static_cast<cudaStream_t>(stream)>>>(params);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int forward_any(const ForwardParams<T> &params, const LaunchShape &shape, void *stream)
{
  if (shape.max_dim == kSmallDim)
    return launch(forward_kernel<T, kSmallDim>, params, shape, stream);
  return launch(forward_kernel<T, kLargeDim>, params, shape, stream);
}

template <typename T>
int backward_any(const BackwardParams<T> &params, const LaunchShape &shape, void *stream)
{
  if (shape.max_dim == kSmallDim)
    return launch(backward_kernel<T, kSmallDim>, params, shape, stream);
  return launch(backward_kernel<T, kLargeDim>, params, shape, stream);
}

}    // namespace

int cuda_forward(const ForwardParams<float> &params, const LaunchShape &shape, void *stream)
{
  return forward_any(params, shape, stream);
}
int cuda_forward(const ForwardParams<double> &params, const LaunchShape &shape, void *stream)
{
  return forward_any(params, shape, stream);
}
int cuda_backward(const BackwardParams<float> &params, const LaunchShape &shape, void *stream)
{
  return backward_any(params, shape, stream);
}
int cuda_backward(const BackwardParams<double> &params, const LaunchShape &shape, void *stream)
{
  return backward_any(params, shape, stream);
}

}    // namespace gpu
}    // namespace ops
}    // namespace hienet
