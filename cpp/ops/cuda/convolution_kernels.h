// Launchers of the CUDA kernels of hienet::convolution (convolution_kernels.cu), callable from
// plain C++: no torch here and no CUDA runtime types (the stream is a cudaStream_t passed as
// void *). They return cudaSuccess's code 0 or the CUDA error code of the launch.
#ifndef HIENET_OPS_CUDA_CONVOLUTION_KERNELS_H
#define HIENET_OPS_CUDA_CONVOLUTION_KERNELS_H

#include "convolution_body.h"

namespace hienet {
namespace ops {
namespace gpu {

// Grid and block of a launch: one block per centre (forward) or neighbour (backward).
struct LaunchShape {
  int64_t blocks;
  int threads;
  int64_t shared_bytes;
  int max_dim;    // kSmallDim or kLargeDim: the kernel variant
};

// The most threads per block any launch uses (the kernels' __launch_bounds__).
constexpr int kMaxThreads = 256;

int cuda_forward(const ForwardParams<float> &params, const LaunchShape &shape, void *stream);
int cuda_forward(const ForwardParams<double> &params, const LaunchShape &shape, void *stream);
int cuda_backward(const BackwardParams<float> &params, const LaunchShape &shape, void *stream);
int cuda_backward(const BackwardParams<double> &params, const LaunchShape &shape, void *stream);

}    // namespace gpu
}    // namespace ops
}    // namespace hienet

#endif
