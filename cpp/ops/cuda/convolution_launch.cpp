// Torch side of the GPU kernels (convolution_launch.h). The checks and their messages follow
// the CPU operator (convolution_cpu.cpp), so a bad input reads the same on every device.
#include "convolution_launch.h"

// per-operator headers, not ATen/ATen.h: this file is compiled in every CUDA build and by
// the compile-only tests, and the whole of ATen takes twice as long
#include <ATen/TensorOperators.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace hienet {
namespace ops {
namespace gpu {

namespace {

constexpr const char *kOp = "hienet::convolution: ";
constexpr int64_t kPathColumns = 8;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// ---- the plan -------------------------------------------------------------------------------

struct Slice {
  int64_t offset, mul, dim;
};

// Paths with equal slices form a group; slices must be equal or disjoint (the CPU operator's
// rule and messages). Returns the group of each path.
std::vector<int32_t> group_slices(const std::vector<Slice> &slices, int64_t width,
                                  const char *what, std::vector<Slice> &groups)
{
  std::vector<int64_t> owner(static_cast<size_t>(width), -1);
  std::vector<int32_t> group_of(slices.size());
  for (size_t s = 0; s < slices.size(); ++s) {
    const Slice &a = slices[s];
    const int64_t first = owner[a.offset];
    if (first >= 0) {
      const Slice &b = slices[first];
      TORCH_CHECK(b.offset == a.offset && b.mul == a.mul && b.dim == a.dim, kOp, what,
                  " slices of paths ", first, " and ", s, " overlap without being equal");
      group_of[s] = group_of[first];
      continue;
    }
    for (int64_t c = a.offset; c < a.offset + a.mul * a.dim; ++c) {
      TORCH_CHECK(owner[c] < 0, kOp, what, " slices of two paths overlap at column ", c);
      owner[c] = static_cast<int64_t>(s);
    }
    group_of[s] = static_cast<int32_t>(groups.size());
    groups.push_back(a);
  }
  return group_of;
}

struct HostPlan {
  std::vector<PathRecord> paths;          // paths with mul > 0
  std::vector<GroupRecord> out_groups, x_groups;
  std::vector<int32_t> out_group_paths, x_group_paths, entry_path, row_path;
  int64_t out_covered = 0, x_covered = 0;  // columns some path writes / reads
  int64_t coefficient_count = 0;
  int max_dim = 1;

  // The int32 table the kernels read, and where each part starts in it.
  std::vector<int32_t> table;
  size_t at_out_groups = 0, at_x_groups = 0, at_out_paths = 0, at_x_paths = 0, at_entries = 0,
         at_rows = 0;
};

void add_groups(HostPlan &plan, const std::vector<Slice> &slices,
                const std::vector<int32_t> &group_of, const std::vector<Slice> &groups,
                std::vector<GroupRecord> &records, std::vector<int32_t> &group_paths,
                int64_t &covered)
{
  int32_t item = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    GroupRecord r{};
    r.offset = static_cast<int32_t>(groups[g].offset);
    r.mul = static_cast<int32_t>(groups[g].mul);
    r.dim = static_cast<int32_t>(groups[g].dim);
    r.path_begin = static_cast<int32_t>(group_paths.size());
    for (size_t p = 0; p < slices.size(); ++p)
      if (group_of[p] == static_cast<int32_t>(g)) group_paths.push_back(static_cast<int32_t>(p));
    r.path_end = static_cast<int32_t>(group_paths.size());
    r.item = item;
    item += r.mul;
    covered += groups[g].mul * groups[g].dim;
    records.push_back(r);
  }
  (void)plan;
}

// The CPU operator's make_plan checks, in its order, on the [P, 8] table.
HostPlan make_plan(const int64_t *row, int64_t P, int64_t x_dim, int64_t sh_dim,
                   int64_t weight_dim, int64_t out_dim, int64_t coefficient_count)
{
  TORCH_CHECK(out_dim >= 0, kOp, "out_dim must be >= 0, got ", out_dim);
  TORCH_CHECK(x_dim <= kInt32Max && sh_dim <= kInt32Max && weight_dim <= kInt32Max &&
                  out_dim <= kInt32Max && coefficient_count <= kInt32Max,
              kOp, "rows wider than 2^31 - 1 columns are not supported by the GPU kernels");
  HostPlan plan;
  std::vector<Slice> x_slices, out_slices;
  std::vector<int64_t> weight_cover(static_cast<size_t>(weight_dim), -1);
  int64_t c_offset = 0, m_size = 0, rows = 0;
  for (int64_t p = 0; p < P; ++p, row += kPathColumns) {
    const int64_t mul = row[0], d1 = row[1], d2 = row[2], d3 = row[3], x = row[4], sh = row[5],
                  out = row[6], w = row[7];
    TORCH_CHECK(mul >= 0 && d1 > 0 && d2 > 0 && d3 > 0 && x >= 0 && sh >= 0 && out >= 0 && w >= 0,
                kOp, "path ", p, " has a negative entry or a zero dimension");
    TORCH_CHECK(x + mul * d1 <= x_dim, kOp, "path ", p, " reads x columns beyond x's width ", x_dim);
    TORCH_CHECK(sh + d2 <= sh_dim, kOp, "path ", p, " reads sh columns beyond sh's width ", sh_dim);
    TORCH_CHECK(out + mul * d3 <= out_dim, kOp, "path ", p, " writes columns beyond out_dim ",
                out_dim);
    TORCH_CHECK(w + mul <= weight_dim, kOp, "path ", p,
                " reads weight columns beyond weight's width ", weight_dim);
    for (int64_t u = w; u < w + mul; ++u) {
      TORCH_CHECK(weight_cover[u] < 0, kOp, "paths ", weight_cover[u], " and ", p,
                  " share weight column ", u);
      weight_cover[u] = p;
    }
    const int64_t size = d1 * d2 * d3;
    TORCH_CHECK(c_offset + size <= coefficient_count, kOp, "coefficients has ", coefficient_count,
                " values, too few for the paths");
    if (mul > 0) {
      TORCH_CHECK(std::max(d1, d3) <= kLargeDim, kOp, "path ", p, " has an irrep of dimension ",
                  std::max(d1, d3), "; the GPU kernels handle dimensions up to ", kLargeDim,
                  " (l <= 7)");
      PathRecord r{};
      r.mul = static_cast<int32_t>(mul);
      r.d1 = static_cast<int32_t>(d1);
      r.d2 = static_cast<int32_t>(d2);
      r.d3 = static_cast<int32_t>(d3);
      r.x = static_cast<int32_t>(x);
      r.sh = static_cast<int32_t>(sh);
      r.out = static_cast<int32_t>(out);
      r.w = static_cast<int32_t>(w);
      r.c = static_cast<int32_t>(c_offset);
      r.m = static_cast<int32_t>(m_size);
      r.row = static_cast<int32_t>(rows);
      const int32_t index = static_cast<int32_t>(plan.paths.size());
      for (int64_t e = 0; e < d1 * d3; ++e) plan.entry_path.push_back(index);
      for (int64_t i = 0; i < d1; ++i) plan.row_path.push_back(index);
      m_size += d1 * d3;
      rows += d1;
      plan.max_dim = static_cast<int>(std::max<int64_t>(plan.max_dim, std::max(d1, d3)));
      plan.paths.push_back(r);
      x_slices.push_back({x, mul, d1});
      out_slices.push_back({out, mul, d3});
    }
    c_offset += size;
  }
  TORCH_CHECK(c_offset == coefficient_count, kOp, "coefficients has ", coefficient_count,
              " values, the paths need ", c_offset);
  for (int64_t u = 0; u < weight_dim; ++u)
    TORCH_CHECK(weight_cover[u] >= 0, kOp, "weight column ", u, " belongs to no path");
  std::vector<Slice> x_groups, out_groups;
  const std::vector<int32_t> x_group_of = group_slices(x_slices, x_dim, "x", x_groups);
  const std::vector<int32_t> out_group_of =
      group_slices(out_slices, out_dim, "output", out_groups);
  plan.coefficient_count = c_offset;
  add_groups(plan, out_slices, out_group_of, out_groups, plan.out_groups, plan.out_group_paths,
             plan.out_covered);
  add_groups(plan, x_slices, x_group_of, x_groups, plan.x_groups, plan.x_group_paths,
             plan.x_covered);

  // one table: paths, output groups, x groups, their path lists, entry and row owners
  std::vector<int32_t> &t = plan.table;
  auto append = [&t](const int32_t *begin, size_t count) {
    const size_t at = t.size();
    t.insert(t.end(), begin, begin + count);
    return at;
  };
  static_assert(sizeof(PathRecord) == kPathFields * sizeof(int32_t), "PathRecord is packed");
  static_assert(sizeof(GroupRecord) == kGroupFields * sizeof(int32_t), "GroupRecord is packed");
  append(reinterpret_cast<const int32_t *>(plan.paths.data()), plan.paths.size() * kPathFields);
  plan.at_out_groups = append(reinterpret_cast<const int32_t *>(plan.out_groups.data()),
                              plan.out_groups.size() * kGroupFields);
  plan.at_x_groups = append(reinterpret_cast<const int32_t *>(plan.x_groups.data()),
                            plan.x_groups.size() * kGroupFields);
  plan.at_out_paths = append(plan.out_group_paths.data(), plan.out_group_paths.size());
  plan.at_x_paths = append(plan.x_group_paths.data(), plan.x_group_paths.size());
  plan.at_entries = append(plan.entry_path.data(), plan.entry_path.size());
  plan.at_rows = append(plan.row_path.data(), plan.row_path.size());
  if (t.empty()) t.push_back(0);
  return plan;
}

// ---- caches: what would otherwise cross between host and device on every call ---------------

// Host copies of `paths` tables that live on a device (the constants of a model loaded onto
// the GPU), by tensor identity. The entry holds a reference, so the identity stays unique.
std::vector<int64_t> host_paths(const at::Tensor &paths)
{
  TORCH_CHECK(paths.scalar_type() == at::kLong && paths.dim() == 2 &&
                  paths.size(1) == kPathColumns,
              kOp, "paths must be an int64 tensor of shape [P, ", kPathColumns, "], got ",
              paths.scalar_type(), " ", paths.sizes());
  auto copy = [](const at::Tensor &t) {
    const at::Tensor c = t.to(at::kCPU).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };
  if (paths.device().is_cpu()) return copy(paths);
  struct Entry {
    at::Tensor tensor;
    std::vector<int64_t> host;
  };
  static std::mutex mutex;
  static std::map<std::pair<const void *, const void *>, Entry> cache;
  const auto key = std::make_pair(static_cast<const void *>(paths.unsafeGetTensorImpl()),
                                  paths.const_data_ptr());
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second.host;
  if (cache.size() >= 64) cache.clear();
  Entry entry{paths, copy(paths)};
  return cache.emplace(key, std::move(entry)).first->second.host;
}

// A host tensor's copy on `device`, by content (the plan table; coefficients kept on the host).
at::Tensor on_device(const at::Tensor &host, c10::Device device)
{
  if (device.is_cpu()) return host;
  const at::Tensor c = host.contiguous();
  std::string key = device.str() + "/" + std::string(c10::toString(c.scalar_type())) + "/";
  key.append(static_cast<const char *>(c.const_data_ptr()), c.nbytes());
  static std::mutex mutex;
  static std::map<std::string, at::Tensor> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  if (cache.size() >= 256) cache.clear();
  at::Tensor copy = c.to(device);
  cache.emplace(std::move(key), copy);
  return copy;
}

// ---- inputs -----------------------------------------------------------------------------------

void check_features(const Launcher &launcher, const at::Tensor &x, const at::Tensor &sh,
                    const at::Tensor &weight, const at::Tensor &coefficients)
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
  TORCH_CHECK(launcher.on_device(x) && sh.device() == x.device() && weight.device() == x.device(),
              kOp, "the ", launcher.where(), " kernel got tensors on another device (x on ",
              x.device(), ", sh on ", sh.device(), ", weight on ", weight.device(), ")");
  TORCH_CHECK(coefficients.dim() == 1, kOp, "coefficients must be 1-D, got ",
              coefficients.sizes());
}

// edge_index tensors whose indices were found in 0..N-1, by identity, data and version: the
// check copies to the host (a stream synchronisation), so it runs once per graph rather than
// in every call (a model step calls the operators several times with one edge_index). The
// weak reference keeps the TensorImpl's memory, so its address names no other tensor while
// the entry exists, without keeping the indices alive. Writes torch does not count (through
// .data, or DLPack) after a first call go unnoticed.
class CheckedEdges {
 public:
  bool contains(const at::Tensor &t, int64_t N)
  {
    if (t.is_inference()) return false;    // no version counter
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry &e : entries_)
      if (e.impl._unsafe_get_target() == t.unsafeGetTensorImpl() && !e.impl.expired() &&
          e.data == t.const_data_ptr() && e.version == t._version() && e.nodes == N)
        return true;
    return false;
  }

  void add(const at::Tensor &t, int64_t N)
  {
    if (t.is_inference()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= 8) entries_.erase(entries_.begin());
    entries_.push_back({Weak(t.getIntrusivePtr()), t.const_data_ptr(), t._version(), N});
  }

 private:
  using Weak = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
  struct Entry {
    Weak impl;
    const void *data;
    int64_t version, nodes;
  };
  std::mutex mutex_;
  std::vector<Entry> entries_;
};

// edge_index on x's device, checked like the CPU operator checks it (one small copy to the
// host: the smallest and largest index), unless this very tensor was checked before.
at::Tensor checked_edge_index(const at::Tensor &edge_index_in, int64_t E, int64_t N,
                              c10::Device device)
{
  static CheckedEdges checked;
  TORCH_CHECK(edge_index_in.scalar_type() == at::kLong && edge_index_in.dim() == 2 &&
                  edge_index_in.size(0) == 2 && edge_index_in.size(1) == E,
              kOp, "edge_index must be int64 of shape [2, ", E, "], got ",
              edge_index_in.scalar_type(), " ", edge_index_in.sizes());
  const at::Tensor edge_index = edge_index_in.to(device).contiguous();
  // only tensors already on the kernels' device: a host tensor may share its memory with a
  // numpy array, whose writes torch's version counter does not see
  const bool reusable = edge_index_in.device() == device;
  if (E == 0 || (reusable && checked.contains(edge_index_in, N))) return edge_index;
  const auto range = at::aminmax(edge_index);
  const at::Tensor bounds = at::stack({std::get<0>(range), std::get<1>(range)}).to(at::kCPU);
  const int64_t lo = bounds.data_ptr<int64_t>()[0], hi = bounds.data_ptr<int64_t>()[1];
  if (lo < 0 || hi >= N) {
    const at::Tensor flat = edge_index.reshape({-1});
    const at::Tensor bad = at::logical_or(flat < 0, flat >= N).nonzero().reshape({-1});
    const int64_t at = bad[0].item<int64_t>();
    TORCH_CHECK(false, kOp, "edge ", at % E, " has node index ", flat[at].item<int64_t>(),
                ", outside 0..", N - 1);
  }
  if (reusable) checked.add(edge_index_in, N);
  return edge_index;
}

// Edges grouped by `key` (torch's stable sort: each group keeps the edges' order) and the
// start of each group, both on the key's device.
std::pair<at::Tensor, at::Tensor> group_edges(const at::Tensor &key, int64_t N)
{
  const auto sorted = at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor ptr = at::searchsorted(std::get<0>(sorted), at::arange(N + 1, key.options()));
  return {ptr.contiguous(), std::get<1>(sorted).contiguous()};
}

// ---- launch shape -------------------------------------------------------------------------------

int round_threads(int64_t work)
{
  const int64_t warps = std::max<int64_t>(1, (work + 31) / 32);
  return static_cast<int>(std::min<int64_t>(kMaxThreads, warps * 32));
}

// The launch and the edges per tile: the most edges (up to kMaxTile) whose shared memory fits
// kSharedBudget, or the device's limit when even one edge needs more.
std::pair<LaunchShape, int32_t> launch_shape(const Launcher &launcher, const HostPlan &plan,
                                             c10::Device device, int64_t element, int64_t blocks,
                                             int64_t sh_dim, int64_t items)
{
  const int64_t m_size = static_cast<int64_t>(plan.entry_path.size());
  const int64_t c_size = plan.coefficient_count;
  const int64_t limit = launcher.max_shared_bytes(device);
  const int64_t budget = std::min(limit, kSharedBudget);
  auto bytes = [&](int64_t tile) { return shared_layout(element, c_size, m_size, sh_dim, tile).bytes; };
  int64_t tile = launcher.tile > 0 ? launcher.tile : kMaxTile;
  if (launcher.tile <= 0)
    while (tile > 1 && bytes(tile) > budget) --tile;
  TORCH_CHECK(bytes(tile) <= limit, kOp, "the GPU kernels need ", bytes(tile),
              " bytes of shared memory per block for these paths (", c_size,
              " coefficients, ", m_size, " entries per edge), more than the ", limit,
              " bytes this device allows");
  TORCH_CHECK(blocks <= kInt32Max, kOp, "too many nodes for one launch: ", blocks);
  LaunchShape shape{};
  shape.blocks = blocks;
  shape.threads = launcher.threads > 0 ? launcher.threads
                                       : round_threads(std::max<int64_t>(items, m_size));
  TORCH_CHECK(shape.threads >= 1 && shape.threads <= kMaxThreads, kOp, "1 to ", kMaxThreads,
              " threads per block, got ", shape.threads);
  shape.shared_bytes = bytes(tile);
  shape.max_dim = plan.max_dim <= kSmallDim ? kSmallDim : kLargeDim;
  return {shape, static_cast<int32_t>(tile)};
}

template <typename T>
Plan<T> device_plan(const HostPlan &host, const at::Tensor &table, const at::Tensor &coefficients,
                    bool forward)
{
  const int32_t *t = table.const_data_ptr<int32_t>();
  Plan<T> p{};
  p.paths = reinterpret_cast<const PathRecord *>(t);
  p.num_paths = static_cast<int32_t>(host.paths.size());
  const auto &groups = forward ? host.out_groups : host.x_groups;
  p.groups = reinterpret_cast<const GroupRecord *>(t + (forward ? host.at_out_groups : host.at_x_groups));
  p.num_groups = static_cast<int32_t>(groups.size());
  p.group_paths = t + (forward ? host.at_out_paths : host.at_x_paths);
  p.items = groups.empty() ? 0 : groups.back().item + groups.back().mul;
  p.entry_path = t + host.at_entries;
  p.m_size = static_cast<int32_t>(host.entry_path.size());
  p.row_path = t + host.at_rows;
  p.rows = static_cast<int32_t>(host.row_path.size());
  p.coefficients = coefficients.const_data_ptr<T>();
  p.c_size = static_cast<int32_t>(host.coefficient_count);
  return p;
}

struct Prepared {
  HostPlan plan;
  at::Tensor table, coefficients;
};

Prepared prepare(const at::Tensor &paths, const at::Tensor &coefficients, c10::Device device,
                 int64_t x_dim, int64_t sh_dim, int64_t weight_dim, int64_t out_dim)
{
  const std::vector<int64_t> rows = host_paths(paths);
  Prepared r;
  r.plan = make_plan(rows.data(), paths.size(0), x_dim, sh_dim, weight_dim, out_dim,
                     coefficients.numel());
  const at::Tensor table =
      at::from_blob(r.plan.table.data(), {static_cast<int64_t>(r.plan.table.size())},
                    at::TensorOptions().dtype(at::kInt))
          .clone();
  r.table = on_device(table, device);
  r.coefficients = coefficients.device() == device ? coefficients.contiguous()
                                                   : on_device(coefficients.to(at::kCPU), device);
  return r;
}

template <typename T>
void forward_typed(Launcher &launcher, const Prepared &prep, const at::Tensor &x,
                   const at::Tensor &sh, const at::Tensor &weight, const at::Tensor &edge_index,
                   at::Tensor &out)
{
  const int64_t N = x.size(0);
  const auto [row_ptr, row_edges] = group_edges(edge_index[0].contiguous(), N);
  ForwardParams<T> a{};
  a.plan = device_plan<T>(prep.plan, prep.table, prep.coefficients, true);
  a.x = x.const_data_ptr<T>();
  a.x_dim = x.size(1);
  a.sh = sh.const_data_ptr<T>();
  a.sh_dim = sh.size(1);
  a.weight = weight.const_data_ptr<T>();
  a.weight_dim = weight.size(1);
  a.neighbour = edge_index.const_data_ptr<int64_t>() + edge_index.size(1);
  a.row_ptr = row_ptr.const_data_ptr<int64_t>();
  a.row_edges = row_edges.const_data_ptr<int64_t>();
  a.out = out.data_ptr<T>();
  a.out_dim = out.size(1);
  const auto [shape, tile] =
      launch_shape(launcher, prep.plan, x.device(), sizeof(T), N, a.sh_dim, a.plan.items);
  a.tile = tile;
  launcher.forward(a, shape);
}

template <typename T>
void backward_typed(Launcher &launcher, const Prepared &prep, const at::Tensor &grad_out,
                    const at::Tensor &x, const at::Tensor &sh, const at::Tensor &weight,
                    const at::Tensor &edge_index, at::Tensor &grad_x, at::Tensor &grad_sh,
                    at::Tensor &grad_weight)
{
  const int64_t N = x.size(0);
  const auto [col_ptr, col_edges] = group_edges(edge_index[1].contiguous(), N);
  BackwardParams<T> a{};
  a.plan = device_plan<T>(prep.plan, prep.table, prep.coefficients, false);
  a.grad_out = grad_out.const_data_ptr<T>();
  a.out_dim = grad_out.size(1);
  a.x = x.const_data_ptr<T>();
  a.x_dim = x.size(1);
  a.sh = sh.const_data_ptr<T>();
  a.sh_dim = sh.size(1);
  a.weight = weight.const_data_ptr<T>();
  a.weight_dim = weight.size(1);
  a.centre = edge_index.const_data_ptr<int64_t>();
  a.col_ptr = col_ptr.const_data_ptr<int64_t>();
  a.col_edges = col_edges.const_data_ptr<int64_t>();
  a.grad_x = grad_x.defined() ? grad_x.data_ptr<T>() : nullptr;
  a.grad_sh = grad_sh.defined() ? grad_sh.data_ptr<T>() : nullptr;
  a.grad_weight = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
  const auto [shape, tile] = launch_shape(launcher, prep.plan, x.device(), sizeof(T), N,
                                          a.sh_dim, std::max(a.plan.items, a.plan.rows));
  a.tile = tile;
  launcher.backward(a, shape);
}

}    // namespace

at::Tensor convolution(Launcher &launcher, const at::Tensor &x_in, const at::Tensor &sh_in,
                       const at::Tensor &weight_in, const at::Tensor &edge_index_in,
                       const at::Tensor &paths, const at::Tensor &coefficients, int64_t out_dim)
{
  check_features(launcher, x_in, sh_in, weight_in, coefficients);
  const at::Tensor x = x_in.contiguous(), sh = sh_in.contiguous(), weight = weight_in.contiguous();
  const int64_t N = x.size(0), E = sh.size(0);
  const at::Tensor edge_index = checked_edge_index(edge_index_in, E, N, x.device());
  const Prepared prep =
      prepare(paths, coefficients, x.device(), x.size(1), sh.size(1), weight.size(1), out_dim);
  if (N == 0 || E == 0 || prep.plan.paths.empty()) return at::zeros({N, out_dim}, x.options());
  // the kernels write every column some path writes, on every row
  at::Tensor out;
  if (prep.plan.out_covered == out_dim) {
    out = at::empty({N, out_dim}, x.options());
    launcher.poison(out);
  } else {
    out = at::zeros({N, out_dim}, x.options());
  }
  if (x.scalar_type() == at::kDouble)
    forward_typed<double>(launcher, prep, x, sh, weight, edge_index, out);
  else
    forward_typed<float>(launcher, prep, x, sh, weight, edge_index, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    Launcher &launcher, const at::Tensor &grad_out_in, const at::Tensor &x_in,
    const at::Tensor &sh_in, const at::Tensor &weight_in, const at::Tensor &edge_index_in,
    const at::Tensor &paths, const at::Tensor &coefficients, std::array<bool, 3> mask)
{
  check_features(launcher, x_in, sh_in, weight_in, coefficients);
  TORCH_CHECK(grad_out_in.dim() == 2 && grad_out_in.size(0) == x_in.size(0) &&
                  grad_out_in.scalar_type() == x_in.scalar_type() &&
                  grad_out_in.device() == x_in.device(),
              kOp, "grad_out must be a ", launcher.where(), " tensor [", x_in.size(0),
              ", out_dim] of dtype ", x_in.scalar_type(), ", got ", grad_out_in.scalar_type(),
              " ", grad_out_in.sizes());
  const at::Tensor x = x_in.contiguous(), sh = sh_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t N = x.size(0), E = sh.size(0);
  const at::Tensor edge_index = checked_edge_index(edge_index_in, E, N, x.device());
  const Prepared prep = prepare(paths, coefficients, x.device(), x.size(1), sh.size(1),
                                weight.size(1), grad_out.size(1));
  const bool work = N > 0 && E > 0 && !prep.plan.paths.empty();
  auto make = [&](bool wanted, const at::Tensor &like, bool covered) {
    if (!wanted) return at::Tensor();
    if (!work || !covered) return at::zeros_like(like);
    at::Tensor t = at::empty_like(like);
    launcher.poison(t);
    return t;
  };
  // grad_sh rows are written in full (every edge belongs to one neighbour), as are the weight
  // rows (the paths tile them); grad_x only in the columns some path reads
  at::Tensor grad_x = make(mask[0], x, prep.plan.x_covered == x.size(1));
  at::Tensor grad_sh = make(mask[1], sh, true);
  at::Tensor grad_weight = make(mask[2], weight, true);
  if (!work || !(mask[0] || mask[1] || mask[2])) return {grad_x, grad_sh, grad_weight};
  if (x.scalar_type() == at::kDouble)
    backward_typed<double>(launcher, prep, grad_out, x, sh, weight, edge_index, grad_x, grad_sh,
                           grad_weight);
  else
    backward_typed<float>(launcher, prep, grad_out, x, sh, weight, edge_index, grad_x, grad_sh,
                          grad_weight);
  return {grad_x, grad_sh, grad_weight};
}

}    // namespace gpu
}    // namespace ops
}    // namespace hienet
