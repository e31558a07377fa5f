// CPU kernels of hienet::convolution (see convolution_kernel.h). This file is compiled once
// per instruction set with HIENET_KERNEL_ISA naming the namespace (baseline, avx2, avx512)
// and HIENET_VECTOR_BYTES the vector width; it uses no torch and no standard-library
// templates, so every function it emits is either in that namespace or has internal linkage.
//
// Loop order. Forward, per centre c and path p: for each chunk of channels (one vector of
// lanes) the output of the chunk stays in registers while the centre's edges stream by, and
// is stored once. Backward, per neighbour n and path p: likewise for grad_x of n; grad_weight
// of each edge is stored as it is made; grad_sh of each edge comes from the small matrix
// G[i][k] = sum_u w[u] x[i][u] g[k][u] and the non-zero Clebsch-Gordan coefficients.
#include "convolution_kernel.h"

#include <cstring>

#ifndef HIENET_KERNEL_ISA
#error "compile convolution_kernel.cpp with -DHIENET_KERNEL_ISA=<namespace>"
#endif
#ifndef HIENET_VECTOR_BYTES
#define HIENET_VECTOR_BYTES 16
#endif

namespace hienet {
namespace ops {
namespace HIENET_KERNEL_ISA {
namespace {

// GCC/Clang vector extensions: one type per element type, unaligned, may alias T.
typedef float vfloat __attribute__((vector_size(HIENET_VECTOR_BYTES), aligned(4), may_alias));
typedef double vdouble __attribute__((vector_size(HIENET_VECTOR_BYTES), aligned(8), may_alias));

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = vfloat;
  static constexpr int lanes = HIENET_VECTOR_BYTES / 4;
};
template <>
struct Simd<double> {
  using V = vdouble;
  static constexpr int lanes = HIENET_VECTOR_BYTES / 8;
};

// Prefetch distance along a weight row: four cache lines.
template <typename T>
constexpr int64_t kPrefetch = 4 * 64 / static_cast<int64_t>(sizeof(T));

template <typename T>
inline typename Simd<T>::V load(const T *p)
{
  return *reinterpret_cast<const typename Simd<T>::V *>(p);
}

template <typename T>
inline void store(T *p, typename Simd<T>::V v)
{
  *reinterpret_cast<typename Simd<T>::V *>(p) = v;
}

template <typename T>
inline T hsum(typename Simd<T>::V v)
{
  T s = v[0];
  for (int l = 1; l < Simd<T>::lanes; ++l) s += v[l];
  return s;
}

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

// Per-path view of the edges of one centre (forward) or one neighbour (backward).
template <typename T>
struct EdgeBlock {
  int64_t count;
  const T *m;          // [count][d1 * d3]
  const T *const *x;   // forward: neighbour features (component-major), per edge
  const T *const *w;   // per edge: weight row + path offset
  const T *const *g;   // backward: centre's grad_out (component-major), per edge
  T *const *gw;        // backward: grad_weight row + path offset, per edge (or null)
};

// ---- forward ----------------------------------------------------------------------------
// out[u*d3 + k] += sum_e w_e[u] sum_i x_e[i*U + u] M_e[i][k]   (out: natural layout)
template <int D1, int D3, typename T>
void path_forward(int64_t U, int64_t d1, int64_t d3, const EdgeBlock<T> &b, T *out)
{
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  int64_t u0 = 0;
  if constexpr (D1 > 0 && D3 > 0) {
    for (; u0 + L <= U; u0 += L) {
      V a[D3];
      for (int k = 0; k < D3; ++k) a[k] = V{};
      for (int64_t e = 0; e < b.count; ++e) {
        const T *m = b.m + e * (D1 * D3);
        const T *xe = b.x[e] + u0;
        // the weight rows of the edges stream from memory, a chunk at a time each
        __builtin_prefetch(b.w[e] + u0 + kPrefetch<T>);
        const V w = load(b.w[e] + u0);
        V x[D1];
        for (int i = 0; i < D1; ++i) x[i] = w * load(xe + i * U);
        for (int k = 0; k < D3; ++k)
          for (int i = 0; i < D1; ++i) a[k] += x[i] * m[i * D3 + k];
      }
      for (int l = 0; l < L; ++l)
        for (int k = 0; k < D3; ++k) out[(u0 + l) * D3 + k] += a[k][l];
    }
  }
  for (int64_t u = u0; u < U; ++u)
    for (int64_t k = 0; k < d3; ++k) {
      T s = T(0);
      for (int64_t e = 0; e < b.count; ++e) {
        const T *m = b.m + e * d1 * d3;
        T t = T(0);
        for (int64_t i = 0; i < d1; ++i) t += b.x[e][i * U + u] * m[i * d3 + k];
        s += b.w[e][u] * t;
      }
      out[u * d3 + k] += s;
    }
}

// ---- backward, features and weights -------------------------------------------------------
// s_e[i][u] = sum_k M_e[i][k] g_e[k][u];  gx[u*d1 + i] += sum_e w_e[u] s_e[i][u]  (GX);
// gw_e[u] = sum_i x[i*U + u] s_e[i][u]  (GW).  x: the neighbour's features (component-major).
template <int D1, int D3, bool GX, bool GW, typename T>
void path_backward(int64_t U, int64_t d1, int64_t d3, const EdgeBlock<T> &b, const T *xs, T *gx)
{
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  int64_t u0 = 0;
  if constexpr (D1 > 0 && D3 > 0) {
    for (; u0 + L <= U; u0 += L) {
      V x[D1], a[D1];
      for (int i = 0; i < D1; ++i) {
        if constexpr (GW) x[i] = load(xs + i * U + u0);
        a[i] = V{};
      }
      for (int64_t e = 0; e < b.count; ++e) {
        const T *m = b.m + e * (D1 * D3);
        const T *ge = b.g[e] + u0;
        V g[D3];
        for (int k = 0; k < D3; ++k) g[k] = load(ge + k * U);
        V dw{};
        __builtin_prefetch(b.w[e] + u0 + kPrefetch<T>);
        if constexpr (GW) __builtin_prefetch(b.gw[e] + u0 + kPrefetch<T>, 1);
        const V w = load(b.w[e] + u0);
        for (int i = 0; i < D1; ++i) {
          V s = g[0] * m[i * D3];
          for (int k = 1; k < D3; ++k) s += g[k] * m[i * D3 + k];
          if constexpr (GX) a[i] += w * s;
          if constexpr (GW) dw += x[i] * s;
        }
        if constexpr (GW) store(b.gw[e] + u0, dw);
      }
      if constexpr (GX)
        for (int l = 0; l < L; ++l)
          for (int i = 0; i < D1; ++i) gx[(u0 + l) * D1 + i] += a[i][l];
    }
  }
  for (int64_t u = u0; u < U; ++u) {
    for (int64_t e = 0; e < b.count; ++e) {
      const T *m = b.m + e * d1 * d3;
      T dw = T(0);
      for (int64_t i = 0; i < d1; ++i) {
        T s = T(0);
        for (int64_t k = 0; k < d3; ++k) s += b.g[e][k * U + u] * m[i * d3 + k];
        if constexpr (GX) gx[u * d1 + i] += b.w[e][u] * s;
        if constexpr (GW) dw += xs[i * U + u] * s;
      }
      if constexpr (GW) b.gw[e][u] = dw;
    }
  }
}

// ---- backward, spherical harmonics: G[i][k] = sum_u w[u] x[i][u] g[k][u] ------------------
template <int D1, int D3, typename T>
void path_backward_sh(int64_t U, int64_t d1, int64_t d3, const T *xs, const T *w, const T *g,
                      T *G)
{
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  const int64_t n1 = D1 > 0 ? D1 : d1, n3 = D3 > 0 ? D3 : d3;
  const int64_t vec_end = (D1 > 0 && D3 > 0) ? U - U % L : 0;
  for (int64_t i = 0; i < n1; ++i) {
    const T *xi = xs + i * U;
    if constexpr (D1 > 0 && D3 > 0) {
      V acc[D3];
      for (int k = 0; k < D3; ++k) acc[k] = V{};
      for (int64_t u0 = 0; u0 < vec_end; u0 += L) {
        const V wx = load(w + u0) * load(xi + u0);
        for (int k = 0; k < D3; ++k) acc[k] += wx * load(g + k * U + u0);
      }
      for (int k = 0; k < D3; ++k) G[i * D3 + k] = hsum<T>(acc[k]);
    } else {
      for (int64_t k = 0; k < n3; ++k) G[i * n3 + k] = T(0);
    }
    for (int64_t u = vec_end; u < U; ++u) {
      const T wx = w[u] * xi[u];
      for (int64_t k = 0; k < n3; ++k) G[i * n3 + k] += wx * g[k * U + u];
    }
  }
}

template <typename T>
using ForwardFn = void (*)(int64_t, int64_t, int64_t, const EdgeBlock<T> &, T *);
template <typename T>
using BackwardFn = void (*)(int64_t, int64_t, int64_t, const EdgeBlock<T> &, const T *, T *);
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
BackwardFn<T> pick_backward(int64_t d1, int64_t d3)
{
#define HIENET_CASE(a, b) \
  if (d1 == a && d3 == b) return &path_backward<a, b, GX, GW, T>;
  HIENET_FOR_SIZES(HIENET_CASE)
#undef HIENET_CASE
  return &path_backward<0, 0, GX, GW, T>;
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

// Scratch layout: per-edge pointer arrays, M of every edge of the block, G (scratch_bytes()).
template <typename T>
struct Scratch {
  T *m;
  const T **x;
  const T **w;
  const T **g;
  T **gw;
  T *G;
};

template <typename T>
Scratch<T> carve(void *memory, int64_t max_degree, int64_t max_m)
{
  Scratch<T> s;
  char *p = static_cast<char *>(memory);    // pointers first: the memory is pointer-aligned
  s.x = reinterpret_cast<const T **>(p);
  p += sizeof(T *) * max_degree;
  s.w = reinterpret_cast<const T **>(p);
  p += sizeof(T *) * max_degree;
  s.g = reinterpret_cast<const T **>(p);
  p += sizeof(T *) * max_degree;
  s.gw = reinterpret_cast<T **>(p);
  p += sizeof(T *) * max_degree;
  s.m = reinterpret_cast<T *>(p);
  p += sizeof(T) * max_degree * max_m;
  s.G = reinterpret_cast<T *>(p);
  return s;
}

template <typename T>
void forward_impl(const ForwardArgs<T> &a, int64_t begin, int64_t end, void *memory)
{
  const KernelPlan<T> &plan = a.plan;
  const int64_t P = plan.num_paths;
  ForwardFn<T> *fns = new ForwardFn<T>[P > 0 ? P : 1];
  for (int64_t p = 0; p < P; ++p) fns[p] = pick_forward<T>(plan.paths[p].dim_in, plan.paths[p].dim_out);
  Scratch<T> s = carve<T>(memory, a.max_degree, plan.max_m);

  for (int64_t c = begin; c < end; ++c) {
    T *row = a.out + c * a.out_dim;
    std::memset(row, 0, sizeof(T) * a.out_dim);
    const int64_t first = a.row_ptr[c], count = a.row_ptr[c + 1] - first;
    if (count == 0) continue;
    for (int64_t p = 0; p < P; ++p) {
      const KernelPath &path = plan.paths[p];
      const int64_t md = path.dim_in * path.dim_out;
      for (int64_t q = 0; q < count; ++q) {
        const int64_t e = a.row_edges[first + q];
        build_m(plan, path, a.sh + e * a.sh_dim + path.sh_offset, s.m + q * md);
        s.x[q] = a.x_t + a.neighbour[e] * a.x_dim + path.x_offset;
        s.w[q] = a.weight + e * a.weight_dim + path.weight_offset;
      }
      const EdgeBlock<T> block{count, s.m, s.x, s.w, nullptr, nullptr};
      fns[p](path.mul, path.dim_in, path.dim_out, block, row + path.out_offset);
    }
  }
  delete[] fns;
}

template <typename T>
void backward_impl(const BackwardArgs<T> &a, int64_t begin, int64_t end, void *memory)
{
  const KernelPlan<T> &plan = a.plan;
  const int64_t P = plan.num_paths;
  const bool gx = a.grad_x != nullptr, gw = a.grad_weight != nullptr, gs = a.grad_sh != nullptr;
  BackwardFn<T> *features = new BackwardFn<T>[P > 0 ? P : 1];
  ShFn<T> *shs = new ShFn<T>[P > 0 ? P : 1];
  for (int64_t p = 0; p < P; ++p) {
    const int64_t d1 = plan.paths[p].dim_in, d3 = plan.paths[p].dim_out;
    features[p] = gx && gw ? pick_backward<true, true, T>(d1, d3)
                : gx       ? pick_backward<true, false, T>(d1, d3)
                : gw       ? pick_backward<false, true, T>(d1, d3)
                           : nullptr;
    shs[p] = pick_sh<T>(d1, d3);
  }
  Scratch<T> s = carve<T>(memory, a.max_degree, plan.max_m);

  for (int64_t n = begin; n < end; ++n) {
    T *gx_row = gx ? a.grad_x + n * a.x_dim : nullptr;
    if (gx) std::memset(gx_row, 0, sizeof(T) * a.x_dim);
    const int64_t first = a.col_ptr[n], count = a.col_ptr[n + 1] - first;
    if (count == 0) continue;
    const T *xn = a.x_t + n * a.x_dim;
    if (gs)
      for (int64_t q = 0; q < count; ++q)
        std::memset(a.grad_sh + a.col_edges[first + q] * a.sh_dim, 0, sizeof(T) * a.sh_dim);
    for (int64_t p = 0; p < P; ++p) {
      const KernelPath &path = plan.paths[p];
      const int64_t md = path.dim_in * path.dim_out;
      for (int64_t q = 0; q < count; ++q) {
        const int64_t e = a.col_edges[first + q];
        s.w[q] = a.weight + e * a.weight_dim + path.weight_offset;
        s.g[q] = a.grad_out_t + a.centre[e] * a.out_dim + path.out_offset;
        if (gw) s.gw[q] = a.grad_weight + e * a.weight_dim + path.weight_offset;
        if (features[p]) build_m(plan, path, a.sh + e * a.sh_dim + path.sh_offset, s.m + q * md);
      }
      if (features[p]) {
        const EdgeBlock<T> block{count, s.m, nullptr, s.w, s.g, s.gw};
        features[p](path.mul, path.dim_in, path.dim_out, block, xn + path.x_offset,
                    gx ? gx_row + path.x_offset : nullptr);
      }
      if (gs)
        for (int64_t q = 0; q < count; ++q) {
          const int64_t e = a.col_edges[first + q];
          shs[p](path.mul, path.dim_in, path.dim_out, xn + path.x_offset, s.w[q], s.g[q], s.G);
          T *gy = a.grad_sh + e * a.sh_dim + path.sh_offset;
          for (int64_t z = path.nonzero_begin; z < path.nonzero_end; ++z) {
            const KernelNonzero nz = plan.nonzeros[z];
            gy[nz.j] += plan.values[z] * s.G[nz.i * path.dim_out + nz.k];
          }
        }
    }
  }
  delete[] features;
  delete[] shs;
}

}    // namespace

void forward(const ForwardArgs<float> &args, int64_t begin, int64_t end, void *scratch)
{
  forward_impl(args, begin, end, scratch);
}
void forward(const ForwardArgs<double> &args, int64_t begin, int64_t end, void *scratch)
{
  forward_impl(args, begin, end, scratch);
}
void backward(const BackwardArgs<float> &args, int64_t begin, int64_t end, void *scratch)
{
  backward_impl(args, begin, end, scratch);
}
void backward(const BackwardArgs<double> &args, int64_t begin, int64_t end, void *scratch)
{
  backward_impl(args, begin, end, scratch);
}

}    // namespace HIENET_KERNEL_ISA
}    // namespace ops
}    // namespace hienet
