// The body of the GPU kernels of hienet::convolution: everything a thread block computes, as
// __host__ __device__ functions free of torch and of the CUDA runtime. Two launchers run it:
// convolution_kernels.cu on a GPU (one CUDA block per centre or neighbour, __syncthreads()
// between phases) and convolution_emulated.cpp on the CPU for the tests (blocks and threads
// in loops, every thread of a block finishing a phase before the next phase starts), so the
// arithmetic and indexing checked on the CPU are the ones that run on the GPU.
//
// The operation (convolution.h), per path p and edge e = (centre c, neighbour n):
//
//   out[c, p.out + u*d3 + k] += w[e, p.w + u] * sum_i x[n, p.x + u*d1 + i] M_e[i][k],
//   M_e[i][k] = sum_j C_p[i, j, k] Y[e, p.sh + j]
//
// Forward, one block per centre c: its edges in tiles of `tile` edges; per tile
//   1. edge ids, neighbours and Y rows of the tile into shared memory,
//   2. M of every (edge, path) into shared memory (threads over the entries (e, p, i, k)),
//   3. threads over "items" (output slice, channel u): each owns out[c, slice, u, :] and adds
//      the tile's edges to it (read back from `out` after the first tile).
// Backward, one block per neighbour n (the transposed gather): per tile of n's edges
//   1. edge ids, centres and Y rows; 2. M as above;
//   3. threads over items (x slice, channel u): grad_x[n, slice, u, :] (owned, read back after
//      the first tile) and grad_weight[e, p.w + u] of every path p reading that slice;
//   4. G_e,p[i][k] = sum_u w[e, p.w + u] x[n, p.x + u*d1 + i] grad_out[c, p.out + u*d3 + k]
//      into shared memory (threads over (edge, p, i), a loop over u each);
//   5. grad_sh[e, j] = sum_{p, i, k} C_p[i, j, k] G_e,p[i][k] (threads over (edge, j)).
// Every output element has exactly one writer, which sums in a fixed order: no atomics, so
// two runs give the same bits. The Clebsch-Gordan blocks C_p (dense, path weight included)
// sit in shared memory for the whole block.
//
// Loads along the channel u are coalesced (consecutive threads own consecutive channels of a
// slice; the weight rows are read as whole rows by the threads of a block). Thread-private
// arrays have the compile-time size MAXD (>= every d1 and d3) and are indexed in unrolled
// loops, so they stay in registers.
#ifndef HIENET_OPS_CUDA_CONVOLUTION_BODY_H
#define HIENET_OPS_CUDA_CONVOLUTION_BODY_H

#include <cstdint>

#if defined(__CUDACC__)
#define HIENET_HOST_DEVICE __host__ __device__
#else
#define HIENET_HOST_DEVICE
#endif
// unrolled on the device (register arrays); the host compilers ignore nvcc's pragma
#if defined(__CUDA_ARCH__)
#define HIENET_UNROLL _Pragma("unroll")
#else
#define HIENET_UNROLL
#endif

namespace hienet {
namespace ops {
namespace gpu {

// ---- the plan: int32 records in one table (built by convolution_launch.cpp) ---------------

// One path with mul > 0. c: offset of C_p in the coefficients; m: offset of its d1*d3 entries
// in a per-edge row of M (and G); row: offset of its d1 rows among all paths' rows.
struct PathRecord {
  int32_t mul, d1, d2, d3, x, sh, out, w, c, m, row;
};
constexpr int kPathFields = 11;

// Paths reading one slice of x (backward) or writing one slice of out (forward): slices of two
// paths are equal or disjoint, so each element of a slice has one owner. Items (slice, u) are
// numbered from item for the mul channels; paths[path_begin .. path_end) in group_paths.
struct GroupRecord {
  int32_t offset, mul, dim, path_begin, path_end, item;
};
constexpr int kGroupFields = 6;

template <typename T>
struct Plan {
  const PathRecord *paths;
  int32_t num_paths;
  const GroupRecord *groups;      // output slices (forward) or x slices (backward)
  int32_t num_groups;
  const int32_t *group_paths;     // path indices, grouped
  int32_t items;                  // sum of the groups' mul
  const int32_t *entry_path;      // [m_size] path of each entry of an M row
  int32_t m_size;                 // sum_p d1*d3
  const int32_t *row_path;        // [rows] path of each row (p, i)
  int32_t rows;                   // sum_p d1
  const T *coefficients;          // [c_size] C_p[i, j, k], row-major per path
  int32_t c_size;
};

template <typename T>
struct ForwardParams {
  Plan<T> plan;
  const T *x;                 // [N, x_dim]
  int64_t x_dim;
  const T *sh;                // [E, sh_dim]
  int64_t sh_dim;
  const T *weight;            // [E, weight_dim]
  int64_t weight_dim;
  const int64_t *neighbour;   // [E] row 1 of edge_index
  const int64_t *row_ptr;     // [N + 1] edges of centre c: row_edges[row_ptr[c] .. row_ptr[c+1])
  const int64_t *row_edges;   // [E]
  T *out;                     // [N, out_dim]; columns of no path are zero beforehand
  int64_t out_dim;
  int32_t tile;               // edges per tile
};

template <typename T>
struct BackwardParams {
  Plan<T> plan;
  const T *grad_out;          // [N, out_dim]
  int64_t out_dim;
  const T *x;
  int64_t x_dim;
  const T *sh;
  int64_t sh_dim;
  const T *weight;
  int64_t weight_dim;
  const int64_t *centre;      // [E] row 0 of edge_index
  const int64_t *col_ptr;     // [N + 1] edges of neighbour n: col_edges[col_ptr[n] .. col_ptr[n+1])
  const int64_t *col_edges;   // [E]
  T *grad_x;                  // [N, x_dim] or null; columns of no path are zero beforehand
  T *grad_sh;                 // [E, sh_dim] or null
  T *grad_weight;             // [E, weight_dim] or null
  int32_t tile;
};

// ---- shared memory of a block ---------------------------------------------------------------

struct SharedLayout {
  int64_t edge, other, coefficients, y, mat, bytes;
};

HIENET_HOST_DEVICE inline int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// edge ids and their other end (neighbour / centre) [tile], C [c_size], Y [tile][sh_dim],
// M or G [tile][m_size]
HIENET_HOST_DEVICE inline SharedLayout shared_layout(int64_t element, int64_t c_size,
                                                     int64_t m_size, int64_t sh_dim,
                                                     int64_t tile)
{
  SharedLayout l;
  l.edge = 0;
  l.other = l.edge + align16(8 * tile);
  l.coefficients = l.other + align16(8 * tile);
  l.y = l.coefficients + align16(element * c_size);
  l.mat = l.y + align16(element * tile * sh_dim);
  l.bytes = l.mat + align16(element * tile * m_size);
  return l;
}

template <typename T>
struct Shared {
  int64_t *edge;
  int64_t *other;
  T *coefficients;
  T *y;
  T *mat;
};

template <typename T>
HIENET_HOST_DEVICE inline Shared<T> carve(unsigned char *memory, const Plan<T> &plan,
                                          int64_t sh_dim, int64_t tile)
{
  const SharedLayout l = shared_layout(sizeof(T), plan.c_size, plan.m_size, sh_dim, tile);
  Shared<T> s;
  s.edge = reinterpret_cast<int64_t *>(memory + l.edge);
  s.other = reinterpret_cast<int64_t *>(memory + l.other);
  s.coefficients = reinterpret_cast<T *>(memory + l.coefficients);
  s.y = reinterpret_cast<T *>(memory + l.y);
  s.mat = reinterpret_cast<T *>(memory + l.mat);
  return s;
}

// ---- phases (thread t of `threads`) ---------------------------------------------------------

template <typename T>
HIENET_HOST_DEVICE inline void load_coefficients(const Plan<T> &plan, Shared<T> &s, int t,
                                                 int threads)
{
  for (int32_t i = t; i < plan.c_size; i += threads) s.coefficients[i] = plan.coefficients[i];
}

// Edge ids of the tile (edges[begin .. begin + count)), their other end and their Y rows.
template <typename T>
HIENET_HOST_DEVICE inline void load_tile(const int64_t *edges, const int64_t *other_end,
                                         const T *sh, int64_t sh_dim, int64_t begin, int count,
                                         Shared<T> &s, int t, int threads)
{
  for (int q = t; q < count; q += threads) {
    const int64_t e = edges[begin + q];
    s.edge[q] = e;
    s.other[q] = other_end[e];
  }
  const int64_t n = count * sh_dim;
  for (int64_t idx = t; idx < n; idx += threads) {
    const int64_t q = idx / sh_dim, j = idx % sh_dim;
    s.y[idx] = sh[edges[begin + q] * sh_dim + j];
  }
}

// M_e,p[i][k] = sum_j C_p[i, j, k] Y[e, p.sh + j] for the tile's edges, threads over entries.
template <typename T>
HIENET_HOST_DEVICE inline void build_m(const Plan<T> &plan, int64_t sh_dim, int count,
                                       Shared<T> &s, int t, int threads)
{
  const int64_t n = static_cast<int64_t>(count) * plan.m_size;
  for (int64_t idx = t; idx < n; idx += threads) {
    const int64_t q = idx / plan.m_size;
    const int32_t r = static_cast<int32_t>(idx % plan.m_size);
    const PathRecord p = plan.paths[plan.entry_path[r]];
    const int32_t i = (r - p.m) / p.d3, k = (r - p.m) % p.d3;
    const T *c = s.coefficients + p.c + i * p.d2 * p.d3 + k;
    const T *y = s.y + q * sh_dim + p.sh;
    T v = T(0);
    for (int32_t j = 0; j < p.d2; ++j) v += c[j * p.d3] * y[j];
    s.mat[idx] = v;
  }
}

// The group of an item (groups are numbered in item order).
HIENET_HOST_DEVICE inline int32_t group_of(const GroupRecord *groups, int32_t num_groups,
                                           int32_t item)
{
  int32_t g = 0;
  while (g + 1 < num_groups && groups[g + 1].item <= item) ++g;
  return g;
}

// Forward phase 3: out[c, slice, u, :] += the tile's messages, for the items of thread t.
template <typename T, int MAXD>
HIENET_HOST_DEVICE inline void forward_accumulate(const ForwardParams<T> &a, int64_t c,
                                                  int count, bool first_tile,
                                                  const Shared<T> &s, int t, int threads)
{
  const Plan<T> &plan = a.plan;
  for (int32_t item = t; item < plan.items; item += threads) {
    const GroupRecord g = plan.groups[group_of(plan.groups, plan.num_groups, item)];
    const int32_t u = item - g.item, d3 = g.dim;
    T *o = a.out + c * a.out_dim + g.offset + static_cast<int64_t>(u) * d3;
    T acc[MAXD];
    HIENET_UNROLL
    for (int k = 0; k < MAXD; ++k) acc[k] = (k < d3 && !first_tile) ? o[k] : T(0);
    for (int32_t gp = g.path_begin; gp < g.path_end; ++gp) {
      const PathRecord p = plan.paths[plan.group_paths[gp]];
      const int32_t d1 = p.d1;
      for (int q = 0; q < count; ++q) {
        const int64_t e = s.edge[q], n = s.other[q];
        const T w = a.weight[e * a.weight_dim + p.w + u];
        const T *xr = a.x + n * a.x_dim + p.x + static_cast<int64_t>(u) * d1;
        const T *m = s.mat + static_cast<int64_t>(q) * plan.m_size + p.m;
        T wx[MAXD];
        HIENET_UNROLL
        for (int i = 0; i < MAXD; ++i) wx[i] = i < d1 ? w * xr[i] : T(0);
        HIENET_UNROLL
        for (int k = 0; k < MAXD; ++k) {
          if (k >= d3) continue;
          T v = acc[k];
          HIENET_UNROLL
          for (int i = 0; i < MAXD; ++i)
            if (i < d1) v += wx[i] * m[i * d3 + k];
          acc[k] = v;
        }
      }
    }
    HIENET_UNROLL
    for (int k = 0; k < MAXD; ++k)
      if (k < d3) o[k] = acc[k];
  }
}

// Backward phase 3: grad_x[n, slice, u, :] (owned by the item) and grad_weight[e, p.w + u].
//   s_i = sum_k M[i][k] grad_out[c, p.out + u*d3 + k];  grad_x_i += w s_i;  grad_w = sum_i x_i s_i
template <typename T, int MAXD>
HIENET_HOST_DEVICE inline void backward_features(const BackwardParams<T> &a, int64_t n,
                                                 int count, bool first_tile,
                                                 const Shared<T> &s, int t, int threads)
{
  const Plan<T> &plan = a.plan;
  const bool gx = a.grad_x != nullptr, gw = a.grad_weight != nullptr;
  for (int32_t item = t; item < plan.items; item += threads) {
    const GroupRecord g = plan.groups[group_of(plan.groups, plan.num_groups, item)];
    const int32_t u = item - g.item, d1 = g.dim;
    const int64_t column = g.offset + static_cast<int64_t>(u) * d1;
    T *gxr = gx ? a.grad_x + n * a.x_dim + column : nullptr;
    const T *xr = a.x + n * a.x_dim + column;
    T acc[MAXD], xv[MAXD];
    HIENET_UNROLL
    for (int i = 0; i < MAXD; ++i) {
      acc[i] = (gx && i < d1 && !first_tile) ? gxr[i] : T(0);
      xv[i] = (gw && i < d1) ? xr[i] : T(0);
    }
    for (int32_t gp = g.path_begin; gp < g.path_end; ++gp) {
      const PathRecord p = plan.paths[plan.group_paths[gp]];
      const int32_t d3 = p.d3;
      for (int q = 0; q < count; ++q) {
        const int64_t e = s.edge[q], c = s.other[q];
        const T *gr = a.grad_out + c * a.out_dim + p.out + static_cast<int64_t>(u) * d3;
        const T *m = s.mat + static_cast<int64_t>(q) * plan.m_size + p.m;
        const T w = a.weight[e * a.weight_dim + p.w + u];
        T go[MAXD];
        HIENET_UNROLL
        for (int k = 0; k < MAXD; ++k) go[k] = k < d3 ? gr[k] : T(0);
        T dw = T(0);
        HIENET_UNROLL
        for (int i = 0; i < MAXD; ++i) {
          if (i >= d1) continue;
          T si = T(0);
          HIENET_UNROLL
          for (int k = 0; k < MAXD; ++k)
            if (k < d3) si += m[i * d3 + k] * go[k];
          acc[i] += w * si;
          dw += xv[i] * si;
        }
        if (gw) a.grad_weight[e * a.weight_dim + p.w + u] = dw;
      }
    }
    if (gx) {
      HIENET_UNROLL
      for (int i = 0; i < MAXD; ++i)
        if (i < d1) gxr[i] = acc[i];
    }
  }
}

// Backward phase 4: G_e,p[i][k] = sum_u w[u] x[n, p.x + u*d1 + i] grad_out[c, p.out + u*d3 + k]
// into s.mat, threads over (edge, p, i).
template <typename T, int MAXD>
HIENET_HOST_DEVICE inline void backward_build_g(const BackwardParams<T> &a, int64_t n,
                                                int count, Shared<T> &s, int t, int threads)
{
  const Plan<T> &plan = a.plan;
  const int64_t total = static_cast<int64_t>(count) * plan.rows;
  for (int64_t idx = t; idx < total; idx += threads) {
    const int64_t q = idx / plan.rows;
    const int32_t r = static_cast<int32_t>(idx % plan.rows);
    const PathRecord p = plan.paths[plan.row_path[r]];
    const int32_t i = r - p.row, d1 = p.d1, d3 = p.d3;
    const int64_t e = s.edge[q], c = s.other[q];
    const T *w = a.weight + e * a.weight_dim + p.w;
    const T *xr = a.x + n * a.x_dim + p.x + i;
    const T *gr = a.grad_out + c * a.out_dim + p.out;
    T acc[MAXD];
    HIENET_UNROLL
    for (int k = 0; k < MAXD; ++k) acc[k] = T(0);
    for (int32_t u = 0; u < p.mul; ++u) {
      const T wx = w[u] * xr[static_cast<int64_t>(u) * d1];
      const T *gu = gr + static_cast<int64_t>(u) * d3;
      HIENET_UNROLL
      for (int k = 0; k < MAXD; ++k)
        if (k < d3) acc[k] += wx * gu[k];
    }
    T *G = s.mat + q * plan.m_size + p.m + i * d3;
    HIENET_UNROLL
    for (int k = 0; k < MAXD; ++k)
      if (k < d3) G[k] = acc[k];
  }
}

// Backward phase 5: grad_sh[e, j] = sum over the paths reading column j of sum_{i,k} C G.
template <typename T>
HIENET_HOST_DEVICE inline void backward_grad_sh(const BackwardParams<T> &a, int count,
                                                const Shared<T> &s, int t, int threads)
{
  const Plan<T> &plan = a.plan;
  const int64_t total = count * a.sh_dim;
  for (int64_t idx = t; idx < total; idx += threads) {
    const int64_t q = idx / a.sh_dim, j = idx % a.sh_dim;
    T v = T(0);
    for (int32_t pi = 0; pi < plan.num_paths; ++pi) {
      const PathRecord p = plan.paths[pi];
      const int64_t jj = j - p.sh;
      if (jj < 0 || jj >= p.d2) continue;
      const T *G = s.mat + q * plan.m_size + p.m;
      const T *c = s.coefficients + p.c + jj * p.d3;
      for (int32_t i = 0; i < p.d1; ++i)
        for (int32_t k = 0; k < p.d3; ++k) v += c[i * p.d2 * p.d3 + k] * G[i * p.d3 + k];
    }
    a.grad_sh[s.edge[q] * a.sh_dim + j] = v;
  }
}

// ---- blocks: the phases in order, `run(phase)` runs a phase on every thread, then a barrier -----

template <typename T, int MAXD, class Run>
HIENET_HOST_DEVICE void forward_block(const ForwardParams<T> &a, int64_t c, int threads,
                                      unsigned char *shared, const Run &run)
{
  Shared<T> s = carve(shared, a.plan, a.sh_dim, a.tile);
  run([&](int t) { load_coefficients(a.plan, s, t, threads); });
  const int64_t first = a.row_ptr[c], count = a.row_ptr[c + 1] - first;
  // a centre without edges still writes its (zero) row: one empty tile
  const int64_t tiles = count == 0 ? 1 : (count + a.tile - 1) / a.tile;
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t begin = first + tile * a.tile;
    const int n = static_cast<int>(count - tile * a.tile < a.tile ? count - tile * a.tile : a.tile);
    run([&](int t) { load_tile(a.row_edges, a.neighbour, a.sh, a.sh_dim, begin, n, s, t, threads); });
    run([&](int t) { build_m(a.plan, a.sh_dim, n, s, t, threads); });
    run([&](int t) { forward_accumulate<T, MAXD>(a, c, n, tile == 0, s, t, threads); });
  }
}

template <typename T, int MAXD, class Run>
HIENET_HOST_DEVICE void backward_block(const BackwardParams<T> &a, int64_t nb, int threads,
                                       unsigned char *shared, const Run &run)
{
  Shared<T> s = carve(shared, a.plan, a.sh_dim, a.tile);
  const bool features = a.grad_x != nullptr || a.grad_weight != nullptr;
  run([&](int t) { load_coefficients(a.plan, s, t, threads); });
  const int64_t first = a.col_ptr[nb], count = a.col_ptr[nb + 1] - first;
  const int64_t tiles = count == 0 ? 1 : (count + a.tile - 1) / a.tile;
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t begin = first + tile * a.tile;
    const int n = static_cast<int>(count - tile * a.tile < a.tile ? count - tile * a.tile : a.tile);
    run([&](int t) { load_tile(a.col_edges, a.centre, a.sh, a.sh_dim, begin, n, s, t, threads); });
    if (features) {
      run([&](int t) { build_m(a.plan, a.sh_dim, n, s, t, threads); });
      run([&](int t) { backward_features<T, MAXD>(a, nb, n, tile == 0, s, t, threads); });
    }
    if (a.grad_sh != nullptr) {
      run([&](int t) { backward_build_g<T, MAXD>(a, nb, n, s, t, threads); });
      run([&](int t) { backward_grad_sh(a, n, s, t, threads); });
    }
  }
}

// Register-array sizes the kernels are compiled for: l <= 3 (dim 7) and l <= 7 (dim 15).
constexpr int kSmallDim = 7;
constexpr int kLargeDim = 15;

}    // namespace gpu
}    // namespace ops
}    // namespace hienet

#endif
