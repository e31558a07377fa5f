// CPU implementation of hienet::convolution and hienet::convolution_backward: input checks,
// the plan (paths and non-zero Clebsch-Gordan coefficients), edges sorted by centre (forward)
// and by neighbour (backward) so that threads never write the same row, and the choice of
// instruction set. The arithmetic lives in convolution_kernel.cpp.
#include "convolution.h"

#include "convolution_kernel.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace hienet {
namespace ops {

namespace {

constexpr const char *kOp = "hienet::convolution: ";

enum class Isa { Baseline, Avx2, Avx512 };

bool cpu_has(Isa isa)
{
#if defined(__x86_64__) || defined(_M_X64)
  switch (isa) {
    case Isa::Baseline: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::Baseline;
#endif
}

bool built_with(Isa isa)
{
  switch (isa) {
    case Isa::Baseline: return true;
    case Isa::Avx2:
#if defined(HIENET_OPS_HAVE_AVX2)
      return true;
#else
      return false;
#endif
    case Isa::Avx512:
#if defined(HIENET_OPS_HAVE_AVX512)
      return true;
#else
      return false;
#endif
  }
  return false;
}

const char *isa_name(Isa isa)
{
  switch (isa) {
    case Isa::Baseline: return "baseline";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

// HIENET_CPU_CAPABILITY=baseline|avx2|avx512 forces one (tests run every variant); otherwise
// AVX2 when the CPU has it. AVX-512 is opt-in: on the CPUs measured it was no faster.
Isa selected_isa()
{
  const char *env = std::getenv("HIENET_CPU_CAPABILITY");
  if (env && *env) {
    for (Isa isa : {Isa::Baseline, Isa::Avx2, Isa::Avx512}) {
      if (std::string(env) != isa_name(isa)) continue;
      TORCH_CHECK(built_with(isa), kOp, "HIENET_CPU_CAPABILITY=", env,
                  " but the ops library was built without ", env, " kernels");
      TORCH_CHECK(cpu_has(isa), kOp, "HIENET_CPU_CAPABILITY=", env,
                  " but this CPU does not support ", env);
      return isa;
    }
    TORCH_CHECK(false, kOp, "HIENET_CPU_CAPABILITY must be baseline, avx2 or avx512, got '", env,
                "'");
  }
  if (built_with(Isa::Avx2) && cpu_has(Isa::Avx2)) return Isa::Avx2;
  return Isa::Baseline;
}

template <typename T>
void run_forward(Isa isa, const ForwardArgs<T> &a, int64_t begin, int64_t end, void *scratch)
{
  switch (isa) {
#if defined(HIENET_OPS_HAVE_AVX512)
    case Isa::Avx512: return avx512::forward(a, begin, end, scratch);
#endif
#if defined(HIENET_OPS_HAVE_AVX2)
    case Isa::Avx2: return avx2::forward(a, begin, end, scratch);
#endif
    default: return baseline::forward(a, begin, end, scratch);
  }
}

template <typename T>
void run_backward(Isa isa, const BackwardArgs<T> &a, int64_t begin, int64_t end, void *scratch)
{
  switch (isa) {
#if defined(HIENET_OPS_HAVE_AVX512)
    case Isa::Avx512: return avx512::backward(a, begin, end, scratch);
#endif
#if defined(HIENET_OPS_HAVE_AVX2)
    case Isa::Avx2: return avx2::backward(a, begin, end, scratch);
#endif
    default: return baseline::backward(a, begin, end, scratch);
  }
}

// ---- the plan -------------------------------------------------------------------------

struct Slice {
  int64_t offset, mul, dim;
};

// Component-major position of every column of a row of width `width`, given the path slices
// (each slice is (offset, mul, dim) with channel-major layout u*dim + m). Slices must be
// equal or disjoint.
std::vector<int64_t> component_major_positions(const std::vector<Slice> &slices, int64_t width,
                                               const char *what)
{
  std::vector<int64_t> pos(static_cast<size_t>(width));
  for (int64_t c = 0; c < width; ++c) pos[c] = c;
  std::vector<int64_t> owner(static_cast<size_t>(width), -1);
  for (size_t s = 0; s < slices.size(); ++s) {
    const Slice &a = slices[s];
    const int64_t size = a.mul * a.dim;
    const int64_t first = owner[a.offset];
    if (first >= 0) {
      const Slice &b = slices[first];
      TORCH_CHECK(b.offset == a.offset && b.mul == a.mul && b.dim == a.dim, kOp, what,
                  " slices of paths ", first, " and ", s, " overlap without being equal");
      continue;
    }
    for (int64_t c = a.offset; c < a.offset + size; ++c) {
      TORCH_CHECK(owner[c] < 0, kOp, what, " slices of two paths overlap at column ", c);
      owner[c] = static_cast<int64_t>(s);
    }
    for (int64_t u = 0; u < a.mul; ++u)
      for (int64_t m = 0; m < a.dim; ++m) pos[a.offset + u * a.dim + m] = a.offset + m * a.mul + u;
  }
  return pos;
}

template <typename T>
struct Plan {
  std::vector<KernelPath> paths;
  std::vector<KernelNonzero> nonzeros;
  std::vector<T> values;
  std::vector<int64_t> x_t_pos, out_t_pos;
  int64_t max_m = 1;

  KernelPlan<T> kernel() const
  {
    return {paths.data(), static_cast<int64_t>(paths.size()), nonzeros.data(), values.data(),
            max_m};
  }
};

template <typename T>
Plan<T> make_plan(const at::Tensor &paths_t, const at::Tensor &coefficients, int64_t x_dim,
                  int64_t sh_dim, int64_t weight_dim, int64_t out_dim)
{
  TORCH_CHECK(paths_t.device().is_cpu() && paths_t.scalar_type() == at::kLong &&
                  paths_t.dim() == 2 && paths_t.size(1) == kPathColumns,
              kOp, "paths must be a CPU int64 tensor of shape [P, ", kPathColumns, "], got ",
              paths_t.scalar_type(), " ", paths_t.sizes());
  TORCH_CHECK(coefficients.dim() == 1, kOp, "coefficients must be 1-D, got ",
              coefficients.sizes());
  TORCH_CHECK(out_dim >= 0, kOp, "out_dim must be >= 0, got ", out_dim);
  const at::Tensor table = paths_t.contiguous();
  const at::Tensor coeff = coefficients.to(at::kCPU).contiguous();
  const int64_t *row = table.data_ptr<int64_t>();
  const T *c = coeff.data_ptr<T>();
  const int64_t P = table.size(0);

  Plan<T> plan;
  std::vector<Slice> x_slices, out_slices;
  std::vector<int64_t> weight_cover(static_cast<size_t>(weight_dim), -1);
  int64_t c_offset = 0;
  for (int64_t p = 0; p < P; ++p, row += kPathColumns) {
    KernelPath k{};
    k.mul = row[0];
    k.dim_in = row[1];
    k.dim_sh = row[2];
    k.dim_out = row[3];
    k.x_offset = row[4];
    k.sh_offset = row[5];
    k.out_offset = row[6];
    k.weight_offset = row[7];
    TORCH_CHECK(k.mul >= 0 && k.dim_in > 0 && k.dim_sh > 0 && k.dim_out > 0 && k.x_offset >= 0 &&
                    k.sh_offset >= 0 && k.out_offset >= 0 && k.weight_offset >= 0,
                kOp, "path ", p, " has a negative entry or a zero dimension");
    TORCH_CHECK(k.x_offset + k.mul * k.dim_in <= x_dim, kOp, "path ", p,
                " reads x columns beyond x's width ", x_dim);
    TORCH_CHECK(k.sh_offset + k.dim_sh <= sh_dim, kOp, "path ", p,
                " reads sh columns beyond sh's width ", sh_dim);
    TORCH_CHECK(k.out_offset + k.mul * k.dim_out <= out_dim, kOp, "path ", p,
                " writes columns beyond out_dim ", out_dim);
    TORCH_CHECK(k.weight_offset + k.mul <= weight_dim, kOp, "path ", p,
                " reads weight columns beyond weight's width ", weight_dim);
    for (int64_t u = k.weight_offset; u < k.weight_offset + k.mul; ++u) {
      TORCH_CHECK(weight_cover[u] < 0, kOp, "paths ", weight_cover[u], " and ", p,
                  " share weight column ", u);
      weight_cover[u] = p;
    }
    const int64_t size = k.dim_in * k.dim_sh * k.dim_out;
    TORCH_CHECK(c_offset + size <= coeff.numel(), kOp, "coefficients has ", coeff.numel(),
                " values, too few for the paths");
    k.nonzero_begin = static_cast<int64_t>(plan.nonzeros.size());
    for (int32_t i = 0; i < k.dim_in; ++i)
      for (int32_t j = 0; j < k.dim_sh; ++j)
        for (int32_t l = 0; l < k.dim_out; ++l) {
          const T v = c[c_offset + (i * k.dim_sh + j) * k.dim_out + l];
          if (v != T(0)) {
            plan.nonzeros.push_back({i, j, l});
            plan.values.push_back(v);
          }
        }
    k.nonzero_end = static_cast<int64_t>(plan.nonzeros.size());
    c_offset += size;
    plan.max_m = std::max(plan.max_m, k.dim_in * k.dim_out);
    if (k.mul == 0) continue;    // e3nn skips empty paths too
    plan.paths.push_back(k);
    x_slices.push_back({k.x_offset, k.mul, k.dim_in});
    out_slices.push_back({k.out_offset, k.mul, k.dim_out});
  }
  TORCH_CHECK(c_offset == coeff.numel(), kOp, "coefficients has ", coeff.numel(),
              " values, the paths need ", c_offset);
  for (int64_t u = 0; u < weight_dim; ++u)
    TORCH_CHECK(weight_cover[u] >= 0, kOp, "weight column ", u, " belongs to no path");
  plan.x_t_pos = component_major_positions(x_slices, x_dim, "x");
  plan.out_t_pos = component_major_positions(out_slices, out_dim, "output");
  return plan;
}

// Edges grouped by `key` (counting sort, stable: each group keeps the edges' order);
// returns the largest group.
int64_t group_edges(const int64_t *key, int64_t E, int64_t N, std::vector<int64_t> &ptr,
                    std::vector<int64_t> &edges)
{
  ptr.assign(static_cast<size_t>(N + 1), 0);
  for (int64_t e = 0; e < E; ++e) ++ptr[key[e] + 1];
  int64_t largest = 0;
  for (int64_t n = 0; n < N; ++n) {
    largest = std::max(largest, ptr[n + 1]);
    ptr[n + 1] += ptr[n];
  }
  edges.resize(static_cast<size_t>(E));
  std::vector<int64_t> fill(ptr.begin(), ptr.end() - 1);
  for (int64_t e = 0; e < E; ++e) edges[fill[key[e]]++] = e;
  return largest;
}

void check_edge_index(const at::Tensor &edge_index, int64_t E, int64_t N)
{
  TORCH_CHECK(edge_index.scalar_type() == at::kLong && edge_index.dim() == 2 &&
                  edge_index.size(0) == 2 && edge_index.size(1) == E,
              kOp, "edge_index must be int64 of shape [2, ", E, "], got ",
              edge_index.scalar_type(), " ", edge_index.sizes());
  const int64_t *ei = edge_index.data_ptr<int64_t>();
  for (int64_t e = 0; e < 2 * E; ++e)
    TORCH_CHECK(ei[e] >= 0 && ei[e] < N, kOp, "edge ", e % E, " has node index ", ei[e],
                ", outside 0..", N - 1);
}

void check_features(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                    const at::Tensor &coefficients)
{
  TORCH_CHECK(x.dim() == 2 && sh.dim() == 2 && weight.dim() == 2, kOp,
              "x, sh and weight must be 2-D, got ", x.sizes(), ", ", sh.sizes(), ", ",
              weight.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kOp,
              "x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(sh.scalar_type() == x.scalar_type() && weight.scalar_type() == x.scalar_type() &&
                  coefficients.scalar_type() == x.scalar_type(),
              kOp, "x, sh, weight and coefficients must have one dtype, got ", x.scalar_type(),
              ", ", sh.scalar_type(), ", ", weight.scalar_type(), ", ", coefficients.scalar_type());
  TORCH_CHECK(sh.size(0) == weight.size(0), kOp, "sh has ", sh.size(0), " rows and weight ",
              weight.size(0), "; both need one per edge");
  TORCH_CHECK(x.device().is_cpu() && sh.device().is_cpu() && weight.device().is_cpu(), kOp,
              "the CPU kernel got tensors on another device");
}

// Rows of `src` [rows, width] with column c moved to pos[c].
template <typename T>
at::Tensor permute_columns(const at::Tensor &src, const std::vector<int64_t> &pos)
{
  const int64_t rows = src.size(0), width = src.size(1);
  at::Tensor dst = at::empty_like(src);
  const T *s = src.data_ptr<T>();
  T *d = dst.data_ptr<T>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < width; ++c) d[r * width + pos[c]] = s[r * width + c];
  });
  return dst;
}

// Rows per task: enough edges to amortise the scheduling, more tasks than threads.
int64_t grain(int64_t N, int64_t E)
{
  (void)E;
  const int64_t threads = at::get_num_threads();
  return std::max<int64_t>(1, N / (4 * threads));
}

template <typename T>
at::Tensor forward_typed(const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                         const at::Tensor &edge_index, const Plan<T> &plan, int64_t out_dim)
{
  const int64_t N = x.size(0), E = sh.size(0);
  if (N == 0 || E == 0 || plan.paths.empty()) return at::zeros({N, out_dim}, x.options());
  // the kernel writes every row in full (rows without edges as zeros)
  at::Tensor out = at::empty({N, out_dim}, x.options());
  const int64_t *ei = edge_index.data_ptr<int64_t>();
  std::vector<int64_t> row_ptr, row_edges;
  const int64_t max_degree = group_edges(ei, E, N, row_ptr, row_edges);
  const at::Tensor x_t = permute_columns<T>(x, plan.x_t_pos);

  ForwardArgs<T> a{};
  a.plan = plan.kernel();
  a.x_t = x_t.data_ptr<T>();
  a.x_dim = x.size(1);
  a.sh = sh.data_ptr<T>();
  a.sh_dim = sh.size(1);
  a.weight = weight.data_ptr<T>();
  a.weight_dim = weight.size(1);
  a.row_ptr = row_ptr.data();
  a.row_edges = row_edges.data();
  a.neighbour = ei + E;
  a.max_degree = max_degree;
  a.out = out.data_ptr<T>();
  a.out_dim = out_dim;
  const Isa isa = selected_isa();
  const int64_t bytes = scratch_bytes(sizeof(T), max_degree, plan.max_m);
  at::parallel_for(0, N, grain(N, E), [&](int64_t begin, int64_t end) {
    std::vector<char> scratch(static_cast<size_t>(bytes));
    run_forward<T>(isa, a, begin, end, scratch.data());
  });
  return out;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_typed(
    const at::Tensor &grad_out, const at::Tensor &x, const at::Tensor &sh,
    const at::Tensor &weight, const at::Tensor &edge_index, const Plan<T> &plan,
    std::array<bool, 3> mask)
{
  const int64_t N = x.size(0), E = sh.size(0);
  at::Tensor grad_x, grad_sh, grad_weight;
  // the kernel writes every row in full (the weight slices tile each weight row)
  const bool work = N > 0 && E > 0 && !plan.paths.empty();
  auto make = [&](bool wanted, const at::Tensor &like) {
    return !wanted ? at::Tensor() : work ? at::empty_like(like) : at::zeros_like(like);
  };
  grad_x = make(mask[0], x);
  grad_sh = make(mask[1], sh);
  grad_weight = make(mask[2], weight);
  if (!work || !(mask[0] || mask[1] || mask[2])) return {grad_x, grad_sh, grad_weight};

  const int64_t *ei = edge_index.data_ptr<int64_t>();
  std::vector<int64_t> col_ptr, col_edges;
  const int64_t max_degree = group_edges(ei + E, E, N, col_ptr, col_edges);
  const at::Tensor x_t = permute_columns<T>(x, plan.x_t_pos);
  const at::Tensor grad_out_t = permute_columns<T>(grad_out, plan.out_t_pos);

  BackwardArgs<T> a{};
  a.plan = plan.kernel();
  a.grad_out_t = grad_out_t.data_ptr<T>();
  a.out_dim = grad_out.size(1);
  a.x_t = x_t.data_ptr<T>();
  a.x_dim = x.size(1);
  a.sh = sh.data_ptr<T>();
  a.sh_dim = sh.size(1);
  a.weight = weight.data_ptr<T>();
  a.weight_dim = weight.size(1);
  a.col_ptr = col_ptr.data();
  a.col_edges = col_edges.data();
  a.centre = ei;
  a.max_degree = max_degree;
  a.grad_x = mask[0] ? grad_x.data_ptr<T>() : nullptr;
  a.grad_sh = mask[1] ? grad_sh.data_ptr<T>() : nullptr;
  a.grad_weight = mask[2] ? grad_weight.data_ptr<T>() : nullptr;
  const Isa isa = selected_isa();
  const int64_t bytes = scratch_bytes(sizeof(T), max_degree, plan.max_m);
  at::parallel_for(0, N, grain(N, E), [&](int64_t begin, int64_t end) {
    std::vector<char> scratch(static_cast<size_t>(bytes));
    run_backward<T>(isa, a, begin, end, scratch.data());
  });
  return {grad_x, grad_sh, grad_weight};
}

}    // namespace

std::string cpu_capability()
{
  return isa_name(selected_isa());
}

at::Tensor convolution_cpu(const at::Tensor &x_in, const at::Tensor &sh_in,
                           const at::Tensor &weight_in, const at::Tensor &edge_index_in,
                           const at::Tensor &paths, const at::Tensor &coefficients,
                           int64_t out_dim)
{
  check_features(x_in, sh_in, weight_in, coefficients);
  const at::Tensor x = x_in.contiguous(), sh = sh_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor edge_index = edge_index_in.to(at::kCPU).contiguous();
  check_edge_index(edge_index, sh.size(0), x.size(0));
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hienet::convolution", [&] {
    const Plan<scalar_t> plan =
        make_plan<scalar_t>(paths, coefficients, x.size(1), sh.size(1), weight.size(1), out_dim);
    return forward_typed<scalar_t>(x, sh, weight, edge_index, plan, out_dim);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_cpu(
    const at::Tensor &grad_out_in, const at::Tensor &x_in, const at::Tensor &sh_in,
    const at::Tensor &weight_in, const at::Tensor &edge_index_in, const at::Tensor &paths,
    const at::Tensor &coefficients, std::array<bool, 3> output_mask)
{
  check_features(x_in, sh_in, weight_in, coefficients);
  TORCH_CHECK(grad_out_in.dim() == 2 && grad_out_in.size(0) == x_in.size(0) &&
                  grad_out_in.scalar_type() == x_in.scalar_type() && grad_out_in.device().is_cpu(),
              kOp, "grad_out must be a CPU tensor [", x_in.size(0), ", out_dim] of dtype ",
              x_in.scalar_type(), ", got ", grad_out_in.scalar_type(), " ", grad_out_in.sizes());
  const at::Tensor x = x_in.contiguous(), sh = sh_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor edge_index = edge_index_in.to(at::kCPU).contiguous();
  check_edge_index(edge_index, sh.size(0), x.size(0));
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hienet::convolution_backward", [&] {
    const Plan<scalar_t> plan = make_plan<scalar_t>(paths, coefficients, x.size(1), sh.size(1),
                                                    weight.size(1), grad_out.size(1));
    return backward_typed<scalar_t>(grad_out, x, sh, weight, edge_index, plan, output_mask);
  });
}

TORCH_LIBRARY_IMPL(hienet, CPU, m)
{
  m.impl("convolution", &convolution_cpu);
  m.impl("convolution_backward", &convolution_backward_cpu);
}

}    // namespace ops
}    // namespace hienet
