// CPU kernels of hienet::convolution, free of torch (and of the C++ standard library's
// templates): convolution_kernel.cpp is compiled once per instruction set (baseline, AVX2+FMA,
// AVX-512) and the torch side (convolution_cpu.cpp) picks one at run time, so no inline
// function compiled for a wider instruction set may leak into code that runs everywhere.
//
// The operation (one 'uvu' tensor product per path p, edge e = (centre c, neighbour n)):
//
//   out[c, p.out + u*d3 + k] += w[e, p.weight + u] * sum_{i,j} C_p[i,j,k] x[n, p.x + u*d1 + i] Y[e, p.sh + j]
//
// computed per edge as M_p = sum_j C_p[:,j,:] Y[e,j] (d1 x d3, independent of the channel u),
// then out_u += w_u * (x_u M_p). C_p holds e3nn's path weight. The features that are read
// (x, and grad_out in the backward) come in a "component-major" layout inside each path's
// slice (index k*mul + u instead of u*d3 + k), so that vectors run over the channel u.
#ifndef HIENET_OPS_CONVOLUTION_KERNEL_H
#define HIENET_OPS_CONVOLUTION_KERNEL_H

#include <cstdint>

namespace hienet {
namespace ops {

// One path (instruction) of the tensor product. Offsets index the rows of x, sh, weight, out.
struct KernelPath {
  int64_t mul;               // channels u (mul of the input irrep = mul of the output irrep)
  int64_t dim_in;            // d1 = 2 l1 + 1
  int64_t dim_sh;            // d2 = 2 l2 + 1
  int64_t dim_out;           // d3 = 2 l3 + 1
  int64_t x_offset;
  int64_t sh_offset;
  int64_t out_offset;
  int64_t weight_offset;
  int64_t nonzero_begin;     // this path's entries of KernelPlan::nonzeros / values
  int64_t nonzero_end;
};

// A non-zero Clebsch-Gordan coefficient C_p[i, j, k].
struct KernelNonzero {
  int32_t i, j, k;
};

template <typename T>
struct KernelPlan {
  const KernelPath *paths;
  int64_t num_paths;
  const KernelNonzero *nonzeros;
  const T *values;           // C_p[i, j, k] of each non-zero, path weight included
  int64_t max_m;             // largest d1 * d3 of any path (scratch size of M)
};

// Forward over centres [begin, end). Edges of centre c are row_edges[row_ptr[c] .. row_ptr[c+1]).
// Every row c in [begin, end) of `out` is written in full.
template <typename T>
struct ForwardArgs {
  KernelPlan<T> plan;
  const T *x_t;              // [N, x_dim], component-major inside each path slice
  int64_t x_dim;
  const T *sh;               // [E, sh_dim]
  int64_t sh_dim;
  const T *weight;           // [E, weight_dim]
  int64_t weight_dim;
  const int64_t *row_ptr;    // [N + 1]
  const int64_t *row_edges;  // [E]
  const int64_t *neighbour;  // [E]
  int64_t max_degree;        // most edges of any centre
  T *out;                    // [N, out_dim], natural layout
  int64_t out_dim;
};

// Backward over neighbours [begin, end). Edges of neighbour n are col_edges[col_ptr[n] ..).
// grad_x (natural layout), grad_sh and grad_weight may each be null (not wanted); rows of
// grad_x in [begin, end) and rows of grad_sh / grad_weight of their edges are written in full.
template <typename T>
struct BackwardArgs {
  KernelPlan<T> plan;
  const T *grad_out_t;       // [N, out_dim], component-major
  int64_t out_dim;
  const T *x_t;              // [N, x_dim], component-major
  int64_t x_dim;
  const T *sh;
  int64_t sh_dim;
  const T *weight;
  int64_t weight_dim;
  const int64_t *col_ptr;    // [N + 1]
  const int64_t *col_edges;  // [E]
  const int64_t *centre;     // [E]
  int64_t max_degree;        // most edges of any neighbour
  T *grad_x;                 // [N, x_dim] or null
  T *grad_sh;                // [E, sh_dim] or null
  T *grad_weight;            // [E, weight_dim] or null
};

// Scratch bytes for one call of forward / backward (static: one copy per translation unit,
// whatever its instruction set).
static inline int64_t scratch_bytes(int64_t element_size, int64_t max_degree, int64_t max_m)
{
  return 4 * static_cast<int64_t>(sizeof(void *)) * max_degree +
         element_size * (max_degree + 1) * max_m;
}

#define HIENET_DECLARE_CONVOLUTION_KERNELS(isa)                                                  \
  namespace isa {                                                                                \
  void forward(const ForwardArgs<float> &args, int64_t begin, int64_t end, void *scratch);     \
  void forward(const ForwardArgs<double> &args, int64_t begin, int64_t end, void *scratch);    \
  void backward(const BackwardArgs<float> &args, int64_t begin, int64_t end, void *scratch);   \
  void backward(const BackwardArgs<double> &args, int64_t begin, int64_t end, void *scratch);  \
  }

HIENET_DECLARE_CONVOLUTION_KERNELS(baseline)
#if defined(HIENET_OPS_HAVE_AVX2)
HIENET_DECLARE_CONVOLUTION_KERNELS(avx2)
#endif
#if defined(HIENET_OPS_HAVE_AVX512)
HIENET_DECLARE_CONVOLUTION_KERNELS(avx512)
#endif

}    // namespace ops
}    // namespace hienet

#endif
