// The lean step (see device_step.h).
//
// Force assembly without floating-point atomics, so that MD on a GPU is reproducible bit for
// bit: F[n] = sum of g over the pairs centred on n - sum of g over the pairs whose neighbour
// is n, each a segment sum (at::segment_reduce with offsets: one thread per segment and
// component adds its values in order on CUDA, a plain loop on the CPU) over the pairs
// grouped by node with a stable counting sort, made on the host once per topology. The
// model's per-edge values go into their pairs' rows with index_copy_ (each row written once),
// the global virial is a torch sum (a fixed reduction tree, no atomics), and the owners'
// gradient rows of graph exchange are added with index_add over unique rows (one addition
// per element).
#include "device_step.h"

#include "hienet/keys.h"

#include <ATen/ops/nonzero_static.h>
#include <ATen/ops/segment_reduce.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>

namespace hienet {

namespace {

// Sections of a staging buffer, each aligned to 64 bytes (views of other dtypes need it).
struct Layout {
  int64_t total = 0;
  int64_t add(int64_t bytes)
  {
    const int64_t at = (total + 63) / 64 * 64;
    total = at + bytes;
    return at;
  }
};

std::string nodes_text(int64_t i, int64_t j)
{
  return "nodes " + std::to_string(i) + " and " + std::to_string(j);
}

// NodeError for an edge shorter than MIN_ATOM_DISTANCE or with a non-finite vector: the model
// would return NaN there (a zero-length edge has no direction). d2: |vector|^2 in Å^2.
[[noreturn]] void bad_edge(int64_t e, int64_t i, int64_t j, double d2)
{
  if (!std::isfinite(d2))
    throw NodeError(NodeError::Kind::NonFiniteEdge, i, j, std::nan(""),
                    "invalid graph: edge " + std::to_string(e) + " between " + nodes_text(i, j) +
                        " has a non-finite vector");
  std::ostringstream what;
  what << nodes_text(i, j) << " are " << std::sqrt(d2) << " A apart (< "
       << keys::MIN_ATOM_DISTANCE << " A): overlapping atoms, the model is undefined there";
  throw NodeError(NodeError::Kind::Coincident, i, j, std::sqrt(d2), what.str());
}

constexpr double kMinSquared = keys::MIN_ATOM_DISTANCE * keys::MIN_ATOM_DISTANCE;

// Edge-array graphs: every edge vector long enough and finite.
void check_edge_vectors(const Graph &g)
{
  for (int64_t e = 0; e < g.num_edges; ++e) {
    const double *v = g.edge_vec + 3 * e;
    const double d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    if (!(d2 >= kMinSquared && std::isfinite(d2))) bad_edge(e, g.edge_src[e], g.edge_dst[e], d2);
  }
}

// Pair graphs: calls on_edge(k, dx, dy, dz) for every pair k closer than the cutoff, in
// pair order (x_j - x_i in the caller's units), after checking its length; returns their
// number. The comparison is made in the caller's units, as LAMMPS's own cutoff tests are (a
// pair at exactly the cutoff is no edge).
template <typename OnEdge>
int64_t for_each_edge(const Pairs &p, double cutoff, OnEdge &&on_edge)
{
  const double L = p.length_unit, rc = cutoff * L, rcsq = rc * rc;
  const double *x = p.positions;
  int64_t edges = 0;
  for (int64_t k = 0; k < p.num_pairs; ++k) {
    const double *xi = x + 3 * p.point_i[k], *xj = x + 3 * p.point_j[k];
    const double dx = xj[0] - xi[0], dy = xj[1] - xi[1], dz = xj[2] - xi[2];
    const double d2 = dx * dx + dy * dy + dz * dz;
    if (d2 >= rcsq) continue;    // NaN fails this test and is reported below
    if (!(d2 >= kMinSquared * L * L && std::isfinite(d2)))
      bad_edge(edges, p.node_i[k], p.node_j[k], d2 / (L * L));
    on_edge(k, dx, dy, dz);
    ++edges;
  }
  return edges;
}

void check_index(const char *what, const int64_t *values, int64_t count, int64_t bound,
                 const char *of)
{
  for (int64_t k = 0; k < count; ++k)
    if (values[k] < 0 || values[k] >= bound)
      throw Error("invalid graph: " + std::string(what) + "[" + std::to_string(k) + "] = " +
                  std::to_string(values[k]) + " is outside " + of + " 0.." +
                  std::to_string(bound - 1));
}

// The indices and species of a topology (a new one: cached topologies were checked).
void check_topology(const Graph &g, int64_t nspecies)
{
  const int64_t N = g.num_nodes, n_local = g.n_local;
  const int64_t E = g.pairs ? g.pairs->num_pairs : g.num_edges;
  if (N < 0 || E < 0 || n_local < 0 || n_local > N)
    throw Error("invalid graph: num_nodes=" + std::to_string(N) +
                (g.pairs ? " num_pairs=" : " num_edges=") + std::to_string(E) +
                " n_local=" + std::to_string(n_local));
  for (int64_t n = 0; n < N; ++n)
    if (g.species[n] < 0 || g.species[n] >= nspecies)
      throw Error("invalid graph: node " + std::to_string(n) + " has species index " +
                  std::to_string(g.species[n]) + ", the model has " + std::to_string(nspecies) +
                  " species");
  if (!g.pairs) {
    for (int64_t e = 0; e < E; ++e)
      if (g.edge_src[e] < 0 || g.edge_src[e] >= N || g.edge_dst[e] < 0 || g.edge_dst[e] >= N)
        throw Error("invalid graph: edge " + std::to_string(e) + " = (" +
                    std::to_string(g.edge_src[e]) + ", " + std::to_string(g.edge_dst[e]) +
                    ") is outside nodes 0.." + std::to_string(N - 1));
    return;
  }
  const Pairs &p = *g.pairs;
  if (p.num_points < 0 || !(p.length_unit > 0.0) || !std::isfinite(p.length_unit))
    throw Error("invalid graph: num_points=" + std::to_string(p.num_points) +
                " length_unit=" + std::to_string(p.length_unit));
  check_index("point_i", p.point_i, E, p.num_points, "points");
  check_index("point_j", p.point_j, E, p.num_points, "points");
  check_index("node_i", p.node_i, E, N, "nodes");
  check_index("node_j", p.node_j, E, N, "nodes");
}

// Stable counting sort of pairs 0..P-1 by key[p] in [0, N): order [P], offsets [N + 1].
void group_by(const int64_t *key, int64_t P, int64_t N, int64_t *order, int64_t *offsets)
{
  std::fill(offsets, offsets + N + 1, int64_t(0));
  for (int64_t p = 0; p < P; ++p) ++offsets[key[p] + 1];
  for (int64_t n = 0; n < N; ++n) offsets[n + 1] += offsets[n];
  std::vector<int64_t> next(offsets, offsets + N);
  for (int64_t p = 0; p < P; ++p) order[next[static_cast<size_t>(key[p])]++] = p;
}

torch::Tensor bytes_view(const torch::Tensor &bytes, int64_t offset, int64_t count,
                         torch::ScalarType type)
{
  return bytes.narrow(0, offset, count * static_cast<int64_t>(c10::elementSize(type))).view(type);
}

}    // namespace

// --------------------------------------------------------------------------------------

DeviceStep::DeviceStep(torch::Device device, torch::ScalarType dtype, bool lean) :
    device_(device), dtype_(dtype), lean_(lean), pinned_(device.is_cuda())
{
  const auto on_device = torch::TensorOptions().device(device_);
  bit_shifts_ = torch::arange(8, on_device.dtype(torch::kUInt8));
  // row-major 3x3 (a, b) -> LAMMPS order xx yy zz xy xz yz yx zx zy
  lammps_order_ = torch::tensor({0, 4, 8, 1, 2, 5, 3, 6, 7}, torch::kInt64).to(device_);
}

torch::Tensor DeviceStep::host_bytes(torch::Tensor &cache, int64_t bytes, bool reuse)
{
  if (reuse && cache.defined() && cache.numel() >= bytes) return cache;
  // some headroom, so that a slowly growing system does not allocate at every step
  const int64_t capacity = reuse ? bytes + bytes / 4 + 64 : std::max<int64_t>(bytes, 1);
  torch::Tensor fresh = torch::empty(
      {capacity}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(pinned_));
  if (reuse) cache = fresh;
  return fresh;
}

bool DeviceStep::topology_is_new(const Graph &g, bool exchange) const
{
  return g.topology == 0 || !topo_.valid || g.topology != topo_.serial ||
         (exchange && !topo_.has_owners);
}

void DeviceStep::check_centred_on_owners(const Graph &g)
{
  const bool pairs = g.pairs != nullptr;
  const int64_t P = pairs ? g.pairs->num_pairs : g.num_edges;
  const int64_t *centre = pairs ? g.pairs->node_i : g.edge_src;
  const int64_t *neighbour = pairs ? g.pairs->node_j : g.edge_dst;
  for (int64_t e = 0; e < P; ++e)
    if (centre[e] >= g.n_local)
      throw Error(std::string("invalid graph for evaluate_exchange: ") + (pairs ? "pair " : "edge ") +
                  std::to_string(e) + " = (" + std::to_string(centre[e]) + ", " +
                  std::to_string(neighbour[e]) + ") is centred on a ghost node (n_local=" +
                  std::to_string(g.n_local) + ")");
}

void DeviceStep::check_owners(std::vector<int64_t> &owners, int64_t n_local)
{
  std::sort(owners.begin(), owners.end());
  owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
  if (!owners.empty() && (owners.front() < 0 || owners.back() >= n_local))
    throw Error("the feature exchange named node " +
                std::to_string(owners.front() < 0 ? owners.front() : owners.back()) +
                " as an owner with images; owners are the nodes 0.." + std::to_string(n_local - 1));
}

void DeviceStep::begin()
{
  const uint64_t total = stats_.topology_uploads;
  stats_ = StepStats();
  stats_.topology_uploads = total;
}

void DeviceStep::check_cached_sizes(const Graph &g) const
{
  const bool pairs = g.pairs != nullptr;
  const int64_t P = pairs ? g.pairs->num_pairs : g.num_edges;
  const int64_t points = pairs ? g.pairs->num_points : 0;
  if (pairs == topo_.from_pairs && g.num_nodes == topo_.num_nodes && g.n_local == topo_.n_local &&
      P == topo_.num_pairs && points == topo_.num_points)
    return;
  throw Error("invalid graph: topology serial " + std::to_string(g.topology) +
              " was given before to a graph of another size (num_nodes " +
              std::to_string(topo_.num_nodes) + " -> " + std::to_string(g.num_nodes) + ", " +
              (pairs ? "pairs " : "edges ") + std::to_string(topo_.num_pairs) + " -> " +
              std::to_string(P) + "); give each topology a new serial (model.h, Graph::topology)");
}

void DeviceStep::validate(const Graph &g, int64_t nspecies, double cutoff) const
{
  if (topology_is_new(g)) check_topology(g, nspecies);
  else check_cached_sizes(g);
  if (g.pairs) for_each_edge(*g.pairs, cutoff, [](int64_t, double, double, double) {});
  else check_edge_vectors(g);
}

void DeviceStep::remember_empty_topology(const Graph &g)
{
  topo_ = Topology();
  topo_.serial = g.topology;
  topo_.valid = true;
  topo_.has_owners = true;
  topo_.from_pairs = g.pairs != nullptr;
  topo_.n_local = topo_.num_nodes = g.num_nodes;
}

StepGraph DeviceStep::upload_exchange(const Graph &g, int64_t nspecies, double cutoff,
                                      const std::vector<int64_t> &owners)
{
  return upload(g, nspecies, cutoff, &owners);
}

StepGraph DeviceStep::upload(const Graph &g, int64_t nspecies, double cutoff,
                             const std::vector<int64_t> *owners)
{
  const bool fresh = topology_is_new(g, owners != nullptr);
  if (fresh) check_topology(g, nspecies);
  else check_cached_sizes(g);
  if (!lean_) return upload_host(g, fresh, owners, cutoff);

  const Pairs *pairs = g.pairs;
  const int64_t N = g.num_nodes, P = pairs ? pairs->num_pairs : g.num_edges;
  const int64_t points = pairs ? pairs->num_points : 0;
  const int64_t bit_bytes = (P + 7) / 8;
  const int64_t S = (fresh && owners) ? static_cast<int64_t>(owners->size()) : 0;
  constexpr int64_t i64 = sizeof(int64_t), f64 = sizeof(double);

  // ---- the staging buffer: this step's inputs, then a new topology ---------------------
  Layout at;
  const int64_t at_inputs = at.add((pairs ? points : P) * 3 * f64);
  const int64_t at_bits = pairs ? at.add(bit_bytes) : 0;
  int64_t at_species = 0, at_nodes = 0, at_points = 0, at_by_centre = 0, at_centre_offsets = 0,
          at_by_neighbour = 0, at_neighbour_offsets = 0, at_owners = 0;
  if (fresh) {
    at_species = at.add(N * i64);
    at_nodes = at.add(2 * P * i64);
    if (pairs) at_points = at.add(2 * P * i64);
    at_by_centre = at.add(P * i64);
    at_centre_offsets = at.add((N + 1) * i64);
    at_by_neighbour = at.add(P * i64);
    at_neighbour_offsets = at.add((N + 1) * i64);
    at_owners = at.add(S * i64);
  }
  // A new topology gets a buffer of its own: on the CPU the "device" tensors are views of it
  // and must outlive the following steps, which reuse staging_.
  torch::Tensor host = host_bytes(staging_, at.total, !fresh);
  uint8_t *base = host.data_ptr<uint8_t>();
  auto put = [&](int64_t offset, const void *src, int64_t bytes) {
    if (bytes > 0) std::memcpy(base + offset, src, static_cast<size_t>(bytes));
  };

  int64_t E = 0;
  if (pairs) {
    put(at_inputs, pairs->positions, points * 3 * f64);
    uint8_t *bits = base + at_bits;
    std::memset(bits, 0, static_cast<size_t>(bit_bytes));
    E = for_each_edge(*pairs, cutoff, [bits](int64_t k, double, double, double) {
      bits[k >> 3] = static_cast<uint8_t>(bits[k >> 3] | (1u << (k & 7)));
    });
  } else {
    check_edge_vectors(g);
    put(at_inputs, g.edge_vec, P * 3 * f64);
    E = P;
  }
  if (fresh) {
    put(at_species, g.species, N * i64);
    const int64_t *centre = pairs ? pairs->node_i : g.edge_src;
    const int64_t *neighbour = pairs ? pairs->node_j : g.edge_dst;
    put(at_nodes, centre, P * i64);
    put(at_nodes + P * i64, neighbour, P * i64);
    if (pairs) {
      put(at_points, pairs->point_i, P * i64);
      put(at_points + P * i64, pairs->point_j, P * i64);
    }
    auto as_i64 = [&](int64_t offset) { return reinterpret_cast<int64_t *>(base + offset); };
    group_by(centre, P, N, as_i64(at_by_centre), as_i64(at_centre_offsets));
    group_by(neighbour, P, N, as_i64(at_by_neighbour), as_i64(at_neighbour_offsets));
    if (S) put(at_owners, owners->data(), S * i64);
  }

  // ---- the one host -> device copy ------------------------------------------------------
  // non_blocking: the step ends with a blocking download, after which the host writes the
  // staging buffer again; the caching host allocator keeps a dropped topology buffer alive
  // until its copy is done.
  const torch::Tensor dev = host.narrow(0, 0, at.total).to(device_, /*non_blocking=*/true);
  stats_.uploads = 1;
  stats_.upload_bytes = at.total;
  stats_.topology_uploaded = fresh;
  stats_.num_edges = E;

  if (fresh) {
    remember(g, owners);
    Topology &t = topo_;
    t.species = bytes_view(dev, at_species, N, torch::kInt64);
    t.pair_nodes = bytes_view(dev, at_nodes, 2 * P, torch::kInt64).view({2, P});
    if (pairs) t.pair_points = bytes_view(dev, at_points, 2 * P, torch::kInt64).view({2, P});
    t.by_centre = bytes_view(dev, at_by_centre, P, torch::kInt64);
    t.centre_offsets = bytes_view(dev, at_centre_offsets, N + 1, torch::kInt64);
    t.by_neighbour = bytes_view(dev, at_by_neighbour, P, torch::kInt64);
    t.neighbour_offsets = bytes_view(dev, at_neighbour_offsets, N + 1, torch::kInt64);
    t.owners_device = bytes_view(dev, at_owners, S, torch::kInt64);
  }
  stats_.owners_with_images = static_cast<int64_t>(topo_.owners.size());

  // ---- this step's edges, on the device -------------------------------------------------
  torch::NoGradGuard no_grad;
  torch::Tensor edge_index;
  edges_ = Edges();
  edges_.count = E;
  if (pairs) {
    const torch::Tensor bits = bytes_view(dev, at_bits, bit_bytes, torch::kUInt8);
    const torch::Tensor is_edge = torch::bitwise_right_shift(bits.unsqueeze(1), bit_shifts_)
                                      .bitwise_and_(1)
                                      .reshape({-1})
                                      .narrow(0, 0, P);
    // the host counted the edges, so no device -> host synchronisation (torch::nonzero would)
    edges_.active = at::nonzero_static(is_edge, E, -1).reshape({-1});
    const torch::Tensor ends = topo_.pair_points.index_select(1, edges_.active);
    const torch::Tensor x = bytes_view(dev, at_inputs, points * 3, torch::kFloat64).view({points, 3});
    edges_.vec64 = x.index_select(0, ends[1]) - x.index_select(0, ends[0]);
    if (pairs->length_unit != 1.0) edges_.vec64.div_(pairs->length_unit);
    edge_index = topo_.pair_nodes.index_select(1, edges_.active);
  } else {
    edges_.vec64 = bytes_view(dev, at_inputs, P * 3, torch::kFloat64).view({P, 3});
    edge_index = topo_.pair_nodes;
  }
  return {topo_.species, edge_index,
          edges_.vec64.to(dtype_, /*non_blocking=*/false, /*copy=*/true)};
}

void DeviceStep::remember(const Graph &g, const std::vector<int64_t> *owners)
{
  Topology t;
  t.serial = g.topology;
  t.valid = true;
  t.from_pairs = g.pairs != nullptr;
  t.num_nodes = g.num_nodes;
  t.n_local = g.n_local;
  t.num_pairs = g.pairs ? g.pairs->num_pairs : g.num_edges;
  t.num_points = g.pairs ? g.pairs->num_points : 0;
  t.has_owners = owners != nullptr;
  if (owners) t.owners = *owners;
  topo_ = std::move(t);
  ++stats_.topology_uploads;
}

StepGraph DeviceStep::upload_host(const Graph &g, bool fresh, const std::vector<int64_t> *owners,
                                  double cutoff)
{
  const int64_t N = g.num_nodes;
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  int64_t E = 0;
  if (g.pairs) {    // the edges of this step, in pair order, as the old graph builders made them
    const Pairs &p = *g.pairs;
    host_.src.clear();
    host_.dst.clear();
    host_.vec.clear();
    E = for_each_edge(p, cutoff, [&](int64_t k, double dx, double dy, double dz) {
      host_.src.push_back(p.node_i[k]);
      host_.dst.push_back(p.node_j[k]);
      host_.vec.insert(host_.vec.end(), {dx, dy, dz});
    });
    if (p.length_unit != 1.0)
      for (double &v : host_.vec) v /= p.length_unit;
    host_.src_data = host_.src.data();
    host_.dst_data = host_.dst.data();
    host_.vec_data = host_.vec.data();
  } else {
    check_edge_vectors(g);
    E = g.num_edges;
    host_.src_data = g.edge_src;
    host_.dst_data = g.edge_dst;
    host_.vec_data = g.edge_vec;
  }
  int64_t bytes = 0, copies = 0;
  if (fresh) {
    remember(g, owners);
    topo_.species = torch::from_blob(const_cast<int64_t *>(g.species), {N}, i64)
                        .to(device_, torch::kInt64, false, /*copy=*/true);
    const auto S = static_cast<int64_t>(topo_.owners.size());
    topo_.owners_device = torch::from_blob(topo_.owners.data(), {S}, i64)
                              .to(device_, torch::kInt64, false, /*copy=*/true);
    bytes += (N + S) * 8;
    copies += 2;
  }
  torch::Tensor edge_index = torch::empty({2, E}, i64);
  if (E > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), host_.src_data, sizeof(int64_t) * E);
    std::memcpy(edge_index.data_ptr<int64_t>() + E, host_.dst_data, sizeof(int64_t) * E);
  }
  torch::Tensor edge_vec =
      E > 0 ? torch::from_blob(const_cast<double *>(host_.vec_data), {E, 3},
                               torch::TensorOptions().dtype(torch::kFloat64))
            : torch::zeros({0, 3}, torch::TensorOptions().dtype(torch::kFloat64));
  stats_.uploads = copies + 2;
  stats_.upload_bytes = bytes + E * (16 + 3 * static_cast<int64_t>(c10::elementSize(dtype_)));
  stats_.topology_uploaded = fresh;
  stats_.num_edges = E;
  stats_.owners_with_images = static_cast<int64_t>(topo_.owners.size());
  edges_ = Edges();
  edges_.count = E;
  // always a copy: the model turns on requires_grad for its edge_vec input
  return {topo_.species, edge_index.to(device_),
          edge_vec.to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true)};
}

// Host mode: forces and virials in double precision, in edge order (model.h).
void DeviceStep::download_host(const torch::Tensor &energy, const torch::Tensor &atom_energy,
                               const torch::Tensor &edge_grad, int nv, Result &r)
{
  const torch::Tensor e = energy.to(torch::kCPU, torch::kFloat64).reshape({-1});
  const torch::Tensor ae = atom_energy.to(torch::kCPU, torch::kFloat64).contiguous();
  const torch::Tensor grad = edge_grad.to(torch::kCPU, torch::kFloat64).contiguous();
  stats_.downloads = 3;
  stats_.download_bytes = (e.numel() + ae.numel() + grad.numel()) * 8;
  r.energy = e.data_ptr<double>()[0];
  std::copy(ae.data_ptr<double>(), ae.data_ptr<double>() + ae.numel(), r.atom_energy.begin());

  const int64_t E = edges_.count;
  const double *gr = grad.data_ptr<double>();
  double *F = r.forces.data();
  double *AV = nv ? r.atom_virial.data() : nullptr;
  double W[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};    // row-major W_ab = -sum r_a g_b
  for (int64_t e_ = 0; e_ < E; ++e_) {
    const int64_t i = host_.src_data[e_], j = host_.dst_data[e_];
    const double *gv = gr + 3 * e_;
    const double *rv = host_.vec_data + 3 * e_;
    for (int a = 0; a < 3; ++a) {
      F[3 * i + a] += gv[a];
      F[3 * j + a] -= gv[a];
    }
    double w[9];
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) w[3 * a + b] = -rv[a] * gv[b];
    for (int k = 0; k < 9; ++k) W[k] += w[k];
    if (AV) {
      // LAMMPS order: xx yy zz xy xz yz [yx zx zy]
      const double c[9] = {w[0], w[4], w[8], w[1], w[2], w[5], w[3], w[6], w[7]};
      double *vi = AV + nv * i, *vj = AV + nv * j;
      for (int k = 0; k < nv; ++k) {
        vi[k] += 0.5 * c[k];
        vj[k] += 0.5 * c[k];
      }
    }
  }
  const double lammps[6] = {W[0], W[4], W[8], W[1], W[2], W[5]};
  std::copy(lammps, lammps + 6, r.virial);
}

// --------------------------------------------------------------------------------------

torch::Tensor DeviceStep::per_pair(const torch::Tensor &edge_values)
{
  if (!topo_.from_pairs) return edge_values;
  return torch::zeros({topo_.num_pairs, edge_values.size(1)}, edge_values.options())
      .index_copy_(0, edges_.active, edge_values);
}

torch::Tensor DeviceStep::group_sum(const torch::Tensor &pair_values, const torch::Tensor &order,
                                    const torch::Tensor &offsets)
{
  if (pair_values.size(0) == 0)    // segment_reduce refuses empty data
    return torch::zeros({topo_.num_nodes, pair_values.size(1)}, pair_values.options());
  return at::segment_reduce(pair_values.index_select(0, order), "sum", std::nullopt, std::nullopt,
                            offsets, /*axis=*/0, /*unsafe=*/true);
}

void DeviceStep::download(const torch::Tensor &energy, const torch::Tensor &atom_energy,
                          const torch::Tensor &edge_grad, int nv, Result &r)
{
  if (!lean_) return download_host(energy, atom_energy, edge_grad, nv, r);
  torch::NoGradGuard no_grad;
  const int64_t E = edges_.count;
  const torch::Tensor g = edge_grad.to(torch::kFloat64);
  // each edge's -r (x) g, in LAMMPS order
  const torch::Tensor w =
      (edges_.vec64.unsqueeze(2) * g.unsqueeze(1)).neg_().reshape({E, 9}).index_select(1, lammps_order_);
  const torch::Tensor g_pairs = per_pair(g);
  const torch::Tensor forces = group_sum(g_pairs, topo_.by_centre, topo_.centre_offsets) -
                               group_sum(g_pairs, topo_.by_neighbour, topo_.neighbour_offsets);
  std::vector<torch::Tensor> parts{energy.to(torch::kFloat64).reshape({1}),
                                   w.sum(0).narrow(0, 0, 6),
                                   atom_energy.to(torch::kFloat64).reshape({-1}),
                                   forces.reshape({-1})};
  if (nv) {
    const torch::Tensor w_pairs = per_pair(w.narrow(1, 0, nv).contiguous());
    parts.push_back((group_sum(w_pairs, topo_.by_centre, topo_.centre_offsets) +
                     group_sum(w_pairs, topo_.by_neighbour, topo_.neighbour_offsets))
                        .mul_(0.5)
                        .reshape({-1}));
  }
  const torch::Tensor packed = torch::cat(parts);

  // ---- the one device -> host copy (blocking) -------------------------------------------
  const int64_t count = packed.numel();
  if (!packed_.defined() || packed_.numel() < count)
    packed_ = torch::empty({count + count / 4 + 8},
                           torch::TensorOptions().dtype(torch::kFloat64).pinned_memory(pinned_));
  torch::Tensor host = packed_.narrow(0, 0, count);
  host.copy_(packed);
  stats_.downloads = 1;
  stats_.download_bytes = count * static_cast<int64_t>(sizeof(double));

  const double *h = host.data_ptr<double>();
  const size_t n_local = r.atom_energy.size(), N3 = r.forces.size();
  r.energy = h[0];
  std::copy(h + 1, h + 7, r.virial);
  std::copy(h + 7, h + 7 + n_local, r.atom_energy.begin());
  std::copy(h + 7 + n_local, h + 7 + n_local + N3, r.forces.begin());
  if (nv) std::copy(h + 7 + n_local + N3, h + count, r.atom_virial.begin());
}

// --------------------------------------------------------------------------------------

DeviceStep::HostTable &DeviceStep::table(int width, int64_t num_nodes)
{
  HostTable &t = tables_[width];
  if (!t.rows.defined() || t.rows.size(0) < num_nodes) {
    t.rows = torch::empty({num_nodes + num_nodes / 4 + 1, width},
                          torch::TensorOptions().dtype(dtype_).pinned_memory(pinned_));
    t.filled_for = 0;
  }
  // owner rows that do not travel hold NaN: an exchange reading one spreads NaN, which the
  // runtime reports as a non-finite result, instead of stale numbers
  if (t.filled_for != stats_.topology_uploads) {
    t.rows.narrow(0, 0, topo_.n_local).fill_(std::numeric_limits<double>::quiet_NaN());
    t.filled_for = stats_.topology_uploads;
  }
  return t;
}

torch::Tensor DeviceStep::exchange_forward(const torch::Tensor &x, int64_t num_nodes,
                                           FeatureExchange &exchange)
{
  torch::NoGradGuard no_grad;
  const int64_t n_local = x.size(0), width = x.size(1), S = stats_.owners_with_images;
  const torch::Tensor rows = table(static_cast<int>(width), num_nodes).rows.narrow(0, 0, num_nodes);
  const size_t row_bytes = static_cast<size_t>(width) * rows.element_size();
  char *table_data = static_cast<char *>(rows.data_ptr());
  if (S > 0) {    // the owners' rows: gathered on the device, one copy to the host
    torch::Tensor sent = host_bytes(sent_rows_, S * static_cast<int64_t>(row_bytes), true)
                             .narrow(0, 0, S * static_cast<int64_t>(row_bytes))
                             .view(dtype_)
                             .view({S, width});
    sent.copy_(x.detach().index_select(0, topo_.owners_device));
    const char *from = static_cast<const char *>(sent.data_ptr());
    for (int64_t k = 0; k < S; ++k)
      std::memcpy(table_data + row_bytes * topo_.owners[static_cast<size_t>(k)], from + row_bytes * k,
                  row_bytes);
    ++stats_.exchange_copies;
    stats_.exchange_bytes += S * static_cast<int64_t>(row_bytes);
  }
  exchange.forward(table_data, num_nodes, static_cast<int>(width),
                   dtype_ == torch::kFloat32 ? RowType::Float32 : RowType::Float64);
  const int64_t ghosts = num_nodes - n_local;
  // the ghost rows: one copy to the device (a copy on the CPU too: the table is reused)
  const torch::Tensor ghost_rows =
      rows.narrow(0, n_local, ghosts).to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true);
  if (ghosts > 0) {
    ++stats_.exchange_copies;
    stats_.exchange_bytes += ghosts * static_cast<int64_t>(row_bytes);
  }
  return torch::cat({x.detach(), ghost_rows});
}

torch::Tensor DeviceStep::exchange_reverse(const torch::Tensor &g, int64_t n_local,
                                           FeatureExchange &exchange)
{
  torch::NoGradGuard no_grad;
  const int64_t num_nodes = g.size(0), width = g.size(1), S = stats_.owners_with_images;
  const int64_t ghosts = num_nodes - n_local;
  const torch::Tensor rows = table(static_cast<int>(width), num_nodes).rows.narrow(0, 0, num_nodes);
  const size_t row_bytes = static_cast<size_t>(width) * rows.element_size();
  char *table_data = static_cast<char *>(rows.data_ptr());
  if (ghosts > 0) {    // the ghost rows: one copy to the host
    rows.narrow(0, n_local, ghosts).copy_(g.narrow(0, n_local, ghosts));
    ++stats_.exchange_copies;
    stats_.exchange_bytes += ghosts * static_cast<int64_t>(row_bytes);
  }
  for (int64_t owner : topo_.owners) std::memset(table_data + row_bytes * owner, 0, row_bytes);
  exchange.reverse(table_data, num_nodes, static_cast<int>(width),
                   dtype_ == torch::kFloat32 ? RowType::Float32 : RowType::Float64);
  const torch::Tensor owners_rows = g.narrow(0, 0, n_local);
  if (S == 0) return owners_rows;
  // what the ghosts gave the owners with images: one copy to the device, added there
  torch::Tensor received = host_bytes(sent_rows_, S * static_cast<int64_t>(row_bytes), true)
                               .narrow(0, 0, S * static_cast<int64_t>(row_bytes))
                               .view(dtype_)
                               .view({S, width});
  char *to = static_cast<char *>(received.data_ptr());
  for (int64_t k = 0; k < S; ++k)
    std::memcpy(to + row_bytes * k, table_data + row_bytes * topo_.owners[static_cast<size_t>(k)],
                row_bytes);
  ++stats_.exchange_copies;
  stats_.exchange_bytes += S * static_cast<int64_t>(row_bytes);
  return owners_rows.index_add(0, topo_.owners_device,
                               received.to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true));
}

}    // namespace hienet
