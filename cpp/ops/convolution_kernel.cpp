// CPU kernels of hienet::convolution (see convolution_kernel.h). This file is compiled once
// per instruction set with HIENET_KERNEL_ISA naming the namespace (baseline, avx2, avx512);
// it uses no torch and no standard-library templates, so every function it emits is either
// in that namespace or has internal linkage.
#include "convolution_kernel.h"

#include <cstring>

#ifndef HIENET_KERNEL_ISA
#error "compile convolution_kernel.cpp with -DHIENET_KERNEL_ISA=<namespace>"
#endif

namespace hienet {
namespace ops {
namespace HIENET_KERNEL_ISA {
namespace {

// M = sum_j C[:, j, :] y[j]  (d1 x d3, row-major), from the path's non-zero coefficients.
template <typename T>
inline void build_m(const KernelPlan<T> &plan, const KernelPath &p, const T *y, T *m)
{
  const int64_t d3 = p.dim_out;
  for (int64_t q = 0; q < p.dim_in * d3; ++q) m[q] = T(0);
  for (int64_t z = p.nonzero_begin; z < p.nonzero_end; ++z) {
    const KernelNonzero nz = plan.nonzeros[z];
    m[nz.i * d3 + nz.k] += plan.values[z] * y[nz.j];
  }
}

// ---- forward: os[k][u] += w[u] * sum_i xs[i][u] M[i][k] --------------------------------
// D1, D3 > 0: sizes known at compile time (l <= 3); 0: any size.
template <int D1, int D3, typename T>
void path_forward(int64_t U, int64_t d1, int64_t d3, const T *__restrict m,
                  const T *__restrict xs, const T *__restrict w, T *__restrict os)
{
  if constexpr (D1 > 0 && D3 > 0) {
#pragma omp simd
    for (int64_t u = 0; u < U; ++u) {
      T x[D1];
      for (int i = 0; i < D1; ++i) x[i] = xs[i * U + u];
      const T wu = w[u];
      for (int k = 0; k < D3; ++k) {
        T t = m[k] * x[0];
        for (int i = 1; i < D1; ++i) t += m[i * D3 + k] * x[i];
        os[k * U + u] += wu * t;
      }
    }
  } else {
    for (int64_t k = 0; k < d3; ++k) {
#pragma omp simd
      for (int64_t u = 0; u < U; ++u) {
        T t = T(0);
        for (int64_t i = 0; i < d1; ++i) t += m[i * d3 + k] * xs[i * U + u];
        os[k * U + u] += w[u] * t;
      }
    }
  }
}

// ---- backward, part 1: s[i][u] = sum_k M[i][k] g[k][u];
//      gxs[i][u] += w[u] s[i][u] (GX),  gw[u] = sum_i xs[i][u] s[i][u] (GW) ---------------
template <int D1, int D3, bool GX, bool GW, typename T>
void path_backward_features(int64_t U, int64_t d1, int64_t d3, const T *__restrict m,
                            const T *__restrict xs, const T *__restrict w,
                            const T *__restrict g, T *__restrict gxs, T *__restrict gw)
{
  if constexpr (D1 > 0 && D3 > 0) {
#pragma omp simd
    for (int64_t u = 0; u < U; ++u) {
      T gk[D3];
      for (int k = 0; k < D3; ++k) gk[k] = g[k * U + u];
      T acc = T(0);
      for (int i = 0; i < D1; ++i) {
        T s = m[i * D3] * gk[0];
        for (int k = 1; k < D3; ++k) s += m[i * D3 + k] * gk[k];
        if constexpr (GX) gxs[i * U + u] += w[u] * s;
        if constexpr (GW) acc += xs[i * U + u] * s;
      }
      if constexpr (GW) gw[u] = acc;
    }
  } else {
#pragma omp simd
    for (int64_t u = 0; u < U; ++u) {
      T acc = T(0);
      for (int64_t i = 0; i < d1; ++i) {
        T s = T(0);
        for (int64_t k = 0; k < d3; ++k) s += m[i * d3 + k] * g[k * U + u];
        if constexpr (GX) gxs[i * U + u] += w[u] * s;
        if constexpr (GW) acc += xs[i * U + u] * s;
      }
      if constexpr (GW) gw[u] = acc;
    }
  }
}

// ---- backward, part 2: G[i][k] = sum_u w[u] xs[i][u] g[k][u]  (then dY_j = sum C_ijk G_ik) --
template <int D1, int D3, typename T>
void path_backward_sh(int64_t U, int64_t d1, int64_t d3, const T *__restrict xs,
                      const T *__restrict w, const T *__restrict g, T *__restrict G)
{
  const int64_t n1 = D1 > 0 ? D1 : d1, n3 = D3 > 0 ? D3 : d3;
  for (int64_t i = 0; i < n1; ++i) {
    const T *xi = xs + i * U;
    for (int64_t k = 0; k < n3; ++k) {
      const T *gk = g + k * U;
      T acc = T(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t u = 0; u < U; ++u) acc += w[u] * xi[u] * gk[u];
      G[i * n3 + k] = acc;
    }
  }
}

template <typename T>
using ForwardFn = void (*)(int64_t, int64_t, int64_t, const T *, const T *, const T *, T *);
template <typename T>
using FeaturesFn = void (*)(int64_t, int64_t, int64_t, const T *, const T *, const T *, const T *,
                            T *, T *);
template <typename T>
using ShFn = void (*)(int64_t, int64_t, int64_t, const T *, const T *, const T *, T *);

// The compile-time sizes: l = 0 .. 3 on either side.
#define HIENET_FOR_SIZES(X) \
  X(1, 1) X(1, 3) X(1, 5) X(1, 7) X(3, 1) X(3, 3) X(3, 5) X(3, 7) \
  X(5, 1) X(5, 3) X(5, 5) X(5, 7) X(7, 1) X(7, 3) X(7, 5) X(7, 7)

template <typename T>
ForwardFn<T> pick_forward(int64_t d1, int64_t d3)
{
#define HIENET_CASE(a, b) \
  if (d1 == a && d3 == b) return &path_forward<a, b, T>;
  HIENET_FOR_SIZES(HIENET_CASE)
#undef HIENET_CASE
  return &path_forward<0, 0, T>;
}

template <bool GX, bool GW, typename T>
FeaturesFn<T> pick_features(int64_t d1, int64_t d3)
{
#define HIENET_CASE(a, b) \
  if (d1 == a && d3 == b) return &path_backward_features<a, b, GX, GW, T>;
  HIENET_FOR_SIZES(HIENET_CASE)
#undef HIENET_CASE
  return &path_backward_features<0, 0, GX, GW, T>;
}

template <typename T>
ShFn<T> pick_sh(int64_t d1, int64_t d3)
{
#define HIENET_CASE(a, b) \
  if (d1 == a && d3 == b) return &path_backward_sh<a, b, T>;
  HIENET_FOR_SIZES(HIENET_CASE)
#undef HIENET_CASE
  return &path_backward_sh<0, 0, T>;
}

template <typename T>
void forward_impl(const ForwardArgs<T> &a, int64_t begin, int64_t end, T *scratch)
{
  const KernelPlan<T> &plan = a.plan;
  const int64_t P = plan.num_paths;
  ForwardFn<T> *fns = new ForwardFn<T>[P > 0 ? P : 1];
  for (int64_t p = 0; p < P; ++p) fns[p] = pick_forward<T>(plan.paths[p].dim_in, plan.paths[p].dim_out);

  T *acc = scratch;
  T *m = scratch + a.out_dim;
  for (int64_t c = begin; c < end; ++c) {
    std::memset(acc, 0, sizeof(T) * a.out_dim);
    for (int64_t idx = a.row_ptr[c]; idx < a.row_ptr[c + 1]; ++idx) {
      const int64_t e = a.row_edges[idx];
      const T *xn = a.x_t + a.neighbour[e] * a.x_dim;
      const T *y = a.sh + e * a.sh_dim;
      const T *we = a.weight + e * a.weight_dim;
      for (int64_t p = 0; p < P; ++p) {
        const KernelPath &path = plan.paths[p];
        build_m(plan, path, y + path.sh_offset, m);
        fns[p](path.mul, path.dim_in, path.dim_out, m, xn + path.x_offset, we + path.weight_offset,
               acc + path.out_offset);
      }
    }
    T *row = a.out + c * a.out_dim;
    for (int64_t col = 0; col < a.out_dim; ++col) row[col] = acc[a.out_t_pos[col]];
  }
  delete[] fns;
}

template <typename T>
void backward_impl(const BackwardArgs<T> &a, int64_t begin, int64_t end, T *scratch)
{
  const KernelPlan<T> &plan = a.plan;
  const int64_t P = plan.num_paths;
  const bool gx = a.grad_x != nullptr, gw = a.grad_weight != nullptr, gs = a.grad_sh != nullptr;
  FeaturesFn<T> *features = new FeaturesFn<T>[P > 0 ? P : 1];
  ShFn<T> *shs = new ShFn<T>[P > 0 ? P : 1];
  for (int64_t p = 0; p < P; ++p) {
    const int64_t d1 = plan.paths[p].dim_in, d3 = plan.paths[p].dim_out;
    features[p] = gx && gw ? pick_features<true, true, T>(d1, d3)
                : gx       ? pick_features<true, false, T>(d1, d3)
                : gw       ? pick_features<false, true, T>(d1, d3)
                           : nullptr;
    shs[p] = pick_sh<T>(d1, d3);
  }

  T *gx_acc = scratch;
  T *m = scratch + a.x_dim;
  T *G = m + plan.max_m;
  for (int64_t n = begin; n < end; ++n) {
    if (gx) std::memset(gx_acc, 0, sizeof(T) * a.x_dim);
    const T *xn = a.x_t + n * a.x_dim;
    for (int64_t idx = a.col_ptr[n]; idx < a.col_ptr[n + 1]; ++idx) {
      const int64_t e = a.col_edges[idx];
      const T *g = a.grad_out_t + a.centre[e] * a.out_dim;
      const T *y = a.sh + e * a.sh_dim;
      const T *we = a.weight + e * a.weight_dim;
      T *gwe = gw ? a.grad_weight + e * a.weight_dim : nullptr;
      T *gye = gs ? a.grad_sh + e * a.sh_dim : nullptr;
      if (gs) std::memset(gye, 0, sizeof(T) * a.sh_dim);
      for (int64_t p = 0; p < P; ++p) {
        const KernelPath &path = plan.paths[p];
        const T *xs = xn + path.x_offset;
        const T *wp = we + path.weight_offset;
        const T *gp = g + path.out_offset;
        if (features[p]) {
          build_m(plan, path, y + path.sh_offset, m);
          features[p](path.mul, path.dim_in, path.dim_out, m, xs, wp, gp,
                      gx ? gx_acc + path.x_offset : nullptr, gw ? gwe + path.weight_offset : nullptr);
        }
        if (gs) {
          shs[p](path.mul, path.dim_in, path.dim_out, xs, wp, gp, G);
          T *gy = gye + path.sh_offset;
          for (int64_t z = path.nonzero_begin; z < path.nonzero_end; ++z) {
            const KernelNonzero nz = plan.nonzeros[z];
            gy[nz.j] += plan.values[z] * G[nz.i * path.dim_out + nz.k];
          }
        }
      }
    }
    if (gx) {
      T *row = a.grad_x + n * a.x_dim;
      for (int64_t col = 0; col < a.x_dim; ++col) row[col] = gx_acc[a.x_t_pos[col]];
    }
  }
  delete[] features;
  delete[] shs;
}

}    // namespace

void forward(const ForwardArgs<float> &args, int64_t begin, int64_t end, float *scratch)
{
  forward_impl(args, begin, end, scratch);
}
void forward(const ForwardArgs<double> &args, int64_t begin, int64_t end, double *scratch)
{
  forward_impl(args, begin, end, scratch);
}
void backward(const BackwardArgs<float> &args, int64_t begin, int64_t end, float *scratch)
{
  backward_impl(args, begin, end, scratch);
}
void backward(const BackwardArgs<double> &args, int64_t begin, int64_t end, double *scratch)
{
  backward_impl(args, begin, end, scratch);
}

}    // namespace HIENET_KERNEL_ISA
}    // namespace ops
}    // namespace hienet
