// The GPU kernels of hienet::convolution run on the CPU, for the tests only: the block bodies
// of convolution_body.h with CUDA's blocks and threads as loops. A phase runs for every thread
// of a block before the next phase starts (what __syncthreads() guarantees); shared memory is
// one buffer per block. The library this file builds, libhienet_ops_emulated.so, registers
// hienet_emulated::convolution / convolution_backward (CPU tensors) and is loaded by tests
// alone, never by the package.
//
// To catch what a sequential run would hide, the launcher can run threads and blocks in
// reverse order (a phase whose threads depend on each other, or blocks that write the same
// element, then give other numbers), fills shared memory and the outputs it is to write in
// full with NaN (a missed write or a read before the write shows), and checks a guard zone
// after the block's shared memory (an overrun fails the call).
#include "convolution_launch.h"

#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <vector>

namespace hienet {
namespace ops {
namespace gpu {

namespace {

// Runs a phase on every thread of the block, in order or in reverse.
struct EmulatedRun {
  int threads;
  bool reverse;
  template <class Phase>
  void operator()(const Phase &phase) const
  {
    for (int i = 0; i < threads; ++i) phase(reverse ? threads - 1 - i : i);
  }
};

constexpr int64_t kGuardBytes = 256;
constexpr unsigned char kGuard = 0xA5;

class EmulatedLauncher final : public Launcher {
 public:
  bool reverse = false;

  const char *where() const override { return "CPU"; }
  bool on_device(const at::Tensor &t) const override { return t.device().is_cpu(); }
  // an H100's opt-in limit per block (227 KiB)
  int64_t max_shared_bytes(c10::Device) const override { return 227 * 1024; }
  void poison(at::Tensor &t) const override { t.fill_(std::numeric_limits<double>::quiet_NaN()); }

  void forward(const ForwardParams<float> &a, const LaunchShape &s) override { run_forward(a, s); }
  void forward(const ForwardParams<double> &a, const LaunchShape &s) override { run_forward(a, s); }
  void backward(const BackwardParams<float> &a, const LaunchShape &s) override { run_backward(a, s); }
  void backward(const BackwardParams<double> &a, const LaunchShape &s) override { run_backward(a, s); }

 private:
  // Blocks in order (or reversed), each with fresh NaN-filled shared memory and a guard zone.
  template <class Block>
  void blocks(const LaunchShape &shape, const Block &block) const
  {
    std::vector<double> storage((shape.shared_bytes + kGuardBytes + 7) / 8 + 2);
    unsigned char *shared = reinterpret_cast<unsigned char *>(storage.data());
    for (int64_t i = 0; i < shape.blocks; ++i) {
      std::memset(shared, 0xFF, static_cast<size_t>(shape.shared_bytes));    // NaN
      std::memset(shared + shape.shared_bytes, kGuard, kGuardBytes);
      block(reverse ? shape.blocks - 1 - i : i, shared);
      for (int64_t b = 0; b < kGuardBytes; ++b)
        TORCH_CHECK(shared[shape.shared_bytes + b] == kGuard,
                    "hienet_emulated: block ", i, " wrote past its ", shape.shared_bytes,
                    " bytes of shared memory");
    }
  }

  template <typename T>
  void run_forward(const ForwardParams<T> &a, const LaunchShape &shape) const
  {
    const EmulatedRun run{shape.threads, reverse};
    blocks(shape, [&](int64_t block, unsigned char *shared) {
      if (shape.max_dim == kSmallDim)
        forward_block<T, kSmallDim>(a, block, shape.threads, shared, run);
      else
        forward_block<T, kLargeDim>(a, block, shape.threads, shared, run);
    });
  }

  template <typename T>
  void run_backward(const BackwardParams<T> &a, const LaunchShape &shape) const
  {
    const EmulatedRun run{shape.threads, reverse};
    blocks(shape, [&](int64_t block, unsigned char *shared) {
      if (shape.max_dim == kSmallDim)
        backward_block<T, kSmallDim>(a, block, shape.threads, shared, run);
      else
        backward_block<T, kLargeDim>(a, block, shape.threads, shared, run);
    });
  }
};

EmulatedLauncher launcher_for(int64_t threads, int64_t tile, bool reverse)
{
  TORCH_CHECK(threads >= 0 && tile >= 0, "hienet_emulated: threads and tile must be >= 0");
  EmulatedLauncher launcher;
  launcher.threads = static_cast<int>(threads);
  launcher.tile = static_cast<int>(tile);
  launcher.reverse = reverse;
  return launcher;
}

at::Tensor convolution_emulated(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                                const at::Tensor &edge_index, const at::Tensor &paths,
                                const at::Tensor &coefficients, int64_t out_dim, int64_t threads,
                                int64_t tile, bool reverse)
{
  EmulatedLauncher launcher = launcher_for(threads, tile, reverse);
  return convolution(launcher, x, sh, weight, edge_index, paths, coefficients, out_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_emulated(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> output_mask, int64_t threads,
    int64_t tile, bool reverse)
{
  EmulatedLauncher launcher = launcher_for(threads, tile, reverse);
  return convolution_backward(launcher, grad_out, x, sh, weight, edge_index, paths, coefficients,
                              output_mask);
}

// The launch the GPU operator would make: (threads, edges per tile, shared bytes, register
// array size) of the forward and the backward, for the report of a test.
std::vector<int64_t> launch_plan(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                                 const at::Tensor &edge_index, const at::Tensor &paths,
                                 const at::Tensor &coefficients, int64_t out_dim)
{
  struct Recorder final : public Launcher {
    std::vector<int64_t> seen;
    const char *where() const override { return "CPU"; }
    bool on_device(const at::Tensor &t) const override { return t.device().is_cpu(); }
    int64_t max_shared_bytes(c10::Device) const override { return 227 * 1024; }
    void note(int32_t tile, const LaunchShape &s)
    {
      seen.insert(seen.end(), {s.threads, tile, s.shared_bytes, s.max_dim});
    }
    void forward(const ForwardParams<float> &a, const LaunchShape &s) override { note(a.tile, s); }
    void forward(const ForwardParams<double> &a, const LaunchShape &s) override { note(a.tile, s); }
    void backward(const BackwardParams<float> &a, const LaunchShape &s) override { note(a.tile, s); }
    void backward(const BackwardParams<double> &a, const LaunchShape &s) override { note(a.tile, s); }
  } recorder;
  const at::Tensor out = convolution(recorder, x, sh, weight, edge_index, paths, coefficients, out_dim);
  convolution_backward(recorder, at::zeros_like(out), x, sh, weight, edge_index, paths,
                       coefficients, {true, true, true});
  return recorder.seen;
}

}    // namespace

TORCH_LIBRARY(hienet_emulated, m)
{
  m.def(
      "convolution(Tensor x, Tensor sh, Tensor weight, Tensor edge_index, Tensor paths, "
      "Tensor coefficients, int out_dim, int threads=0, int tile=0, bool reverse=False) -> Tensor");
  m.def(
      "convolution_backward(Tensor grad_out, Tensor x, Tensor sh, Tensor weight, "
      "Tensor edge_index, Tensor paths, Tensor coefficients, bool[3] output_mask, int threads=0, "
      "int tile=0, bool reverse=False) -> (Tensor, Tensor, Tensor)");
  m.def(
      "launch_plan(Tensor x, Tensor sh, Tensor weight, Tensor edge_index, Tensor paths, "
      "Tensor coefficients, int out_dim) -> int[]",
      &launch_plan);
}

TORCH_LIBRARY_IMPL(hienet_emulated, CPU, m)
{
  m.impl("convolution", &convolution_emulated);
  m.impl("convolution_backward", &convolution_backward_emulated);
}

}    // namespace gpu
}    // namespace ops
}    // namespace hienet
