// HIENet runtime implementation. With archive.cpp, the only translation units that include
// torch (metadata.cpp reads JSON without it).
#include "hienet/model.h"

#include "archive.h"
#include "hienet/allocator.h"
#include "hienet/keys.h"
#include "metadata.h"
#include "staged.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/python/update_graph_executor_opt.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hienet {

namespace {

// First line of a torch error message, without the C++ backtrace.
std::string short_message(const c10::Error &e)
{
  std::string msg = e.what_without_backtrace();
  auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  return msg;
}

std::string in_quotes(const std::string &s)
{
  return "'" + s + "'";
}

void check_readable(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("cannot open HIENet model file " + in_quotes(path) + ": " + std::strerror(errno));
}

// NodeError for an edge shorter than MIN_ATOM_DISTANCE or with a non-finite vector: the model
// would return NaN there (a zero-length edge has no direction).
void check_edge_vector(const Graph &g, int64_t e)
{
  const double *v = g.edge_vec + 3 * e;
  const double d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
  if (d2 >= keys::MIN_ATOM_DISTANCE * keys::MIN_ATOM_DISTANCE && std::isfinite(d2)) return;
  const int64_t i = g.edge_src[e], j = g.edge_dst[e];
  const std::string nodes = "nodes " + std::to_string(i) + " and " + std::to_string(j);
  if (!std::isfinite(d2))
    throw NodeError(NodeError::Kind::NonFiniteEdge, i, j, std::nan(""),
                    "invalid graph: edge " + std::to_string(e) + " between " + nodes +
                        " has a non-finite vector");
  std::ostringstream what;
  what << nodes << " are " << std::sqrt(d2) << " A apart (< " << keys::MIN_ATOM_DISTANCE
       << " A): overlapping atoms, the model is undefined there";
  throw NodeError(NodeError::Kind::Coincident, i, j, std::sqrt(d2), what.str());
}

// NodeError naming the first node whose energy or force is not finite.
void check_finite_outputs(const Result &r, int64_t N, int64_t n_local)
{
  for (int64_t n = 0; n < N; ++n) {
    const double *f = r.forces.data() + 3 * n;
    const bool bad_energy = n < n_local && !std::isfinite(r.atom_energy[n]);
    if (bad_energy || !std::isfinite(f[0]) || !std::isfinite(f[1]) || !std::isfinite(f[2]))
      throw NodeError(NodeError::Kind::NonFiniteOutput, n, -1, std::nan(""),
                      "the model returned a non-finite energy or force for node " +
                          std::to_string(n));
  }
}

int resolve_threads(int requested)
{
  if (requested >= 0) return requested;
  const char *env = std::getenv("HIENET_NUM_THREADS");
  if (!env || !*env) return 1;
  char *end = nullptr;
  long n = std::strtol(env, &end, 10);
  if (*end != '\0' || n < 1 || n > 4096)
    throw Error(std::string("HIENET_NUM_THREADS must be a positive integer, got '") + env + "'");
  return static_cast<int>(n);
}

torch::Device pick_device(const Options &options)
{
  if (options.device == Device::CPU) return torch::Device(torch::kCPU);
  bool have_cuda = torch::cuda::is_available();
  if (!have_cuda) {
    if (options.device == Device::CUDA)
      throw Error("device cuda was requested, but torch " + torch_version() +
                  " sees no CUDA device (a CPU-only torch build, or no visible GPU)");
    return torch::Device(torch::kCPU);
  }
  auto count = static_cast<int>(torch::cuda::device_count());
  int rank = options.local_rank < 0 ? 0 : options.local_rank;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(rank % count));
}

// A file that calls custom operators (hienet::convolution) loads only where they are
// registered: libhienet_ops.so is linked into every user of this runtime, so a miss means a
// broken installation or a file from a newer hienet.
void require_custom_ops(const Metadata &meta, const std::string &path)
{
  for (const std::string &name : meta.custom_ops) {
    if (c10::Dispatcher::singleton().findOp(c10::OperatorName(name, ""))) continue;
    const bool ours = name.rfind("hienet::", 0) == 0;
    throw Error("HIENet model file " + in_quotes(path) + " needs the custom operator " + name +
                (ours ? ", which is not registered: the HIENet operator library "
                        "libhienet_ops.so (installed next to hienet's _runtime module) is not "
                        "loaded or is older than the file"
                      : ", which is not registered in this process") +
                "; re-export with `hienet-export --convolution e3nn` to run without it");
  }
}

// The exported module runs in TorchScript's plain interpreter with eager autograd: the
// profiling executor's optimised graphs (autodiff subgraphs, re-profiling on new shapes) are
// slower for this model than eager autograd, and its first calls profile (FORMAT.md).
class PlainInterpreter {
 public:
  PlainInterpreter() : saved_(torch::jit::getGraphExecutorOptimize())
  {
    torch::jit::setGraphExecutorOptimize(false);
  }
  ~PlainInterpreter() { torch::jit::setGraphExecutorOptimize(saved_); }
  PlainInterpreter(const PlainInterpreter &) = delete;
  PlainInterpreter &operator=(const PlainInterpreter &) = delete;

 private:
  bool saved_;
};

}    // namespace

// --------------------------------------------------------------------------------------

std::string torch_version()
{
  return TORCH_VERSION;
}

Metadata read_metadata(const std::string &path)
{
  check_readable(path);
  std::string text;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord(std::string("extra/") + metadata_keys::file_name)) {
      if (reader.hasRecord("constants.pkl"))
        throw Error("HIENet model file " + in_quotes(path) + " is TorchScript but not written by "
                    "hienet-export (it has no metadata.json); export a HIENet checkpoint with hienet-export");
      throw Error("HIENet model file " + in_quotes(path) + " is a torch.save file (a checkpoint?), "
                  "not written by hienet-export (it has no metadata.json); export it with hienet-export");
    }
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader.getRecord(std::string("extra/") + metadata_keys::file_name);
    text.assign(static_cast<const char *>(data.get()), size);
  } catch (const c10::Error &e) {
    throw Error("cannot read HIENet model file " + in_quotes(path) +
                ": not a TorchScript archive or corrupt (" + short_message(e) +
                "); write it with hienet-export");
  }
  return parse_metadata(text, path);
}

struct Model::Impl {
  std::string path;
  Metadata meta;
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat64;
  int threads = 1;
};

Model::Model(const std::string &path, const Options &options) : impl_(new Impl)
{
  impl_->path = path;
  impl_->meta = read_metadata(path);
  verify_archive(path, impl_->meta);
  impl_->dtype = impl_->meta.dtype == "float32" ? torch::kFloat32 : torch::kFloat64;
  impl_->device = pick_device(options);

  configure_allocator();
  int threads = resolve_threads(options.num_threads);
  if (threads > 0) at::set_num_threads(threads);
  impl_->threads = at::get_num_threads();

  require_custom_ops(impl_->meta, path);
  try {
    impl_->module = torch::jit::load(path, impl_->device);
  } catch (const c10::Error &e) {
    throw Error("cannot load HIENet model file " + in_quotes(path) + " as TorchScript (" +
                short_message(e) + "); re-export it with hienet-export");
  }
  impl_->module.eval();
  if (!impl_->module.find_method("forward"))
    throw Error("HIENet model file " + in_quotes(path) + " has no forward() method");
  check_stage_methods(impl_->module, path);
}

Model::~Model() = default;
Model::Model(Model &&) noexcept = default;
Model &Model::operator=(Model &&) noexcept = default;

const std::string &Model::path() const { return impl_->path; }
const Metadata &Model::metadata() const { return impl_->meta; }
double Model::cutoff() const { return impl_->meta.cutoff; }
int Model::num_message_passing_layers() const { return impl_->meta.num_message_passing_layers; }
const std::vector<std::string> &Model::species() const { return impl_->meta.species; }
const std::string &Model::dtype() const { return impl_->meta.dtype; }
std::string Model::device() const { return impl_->device.str(); }
int Model::num_threads() const { return impl_->threads; }

int Model::species_index(const std::string &symbol) const
{
  const auto &s = impl_->meta.species;
  for (size_t k = 0; k < s.size(); ++k)
    if (s[k] == symbol) return static_cast<int>(k);
  return -1;
}

namespace {

void check_graph(const Graph &g, int64_t nspecies)
{
  const int64_t N = g.num_nodes, E = g.num_edges, n_local = g.n_local;
  if (N < 0 || E < 0 || n_local < 0 || n_local > N)
    throw Error("invalid graph: num_nodes=" + std::to_string(N) + " num_edges=" +
                std::to_string(E) + " n_local=" + std::to_string(n_local));
  for (int64_t n = 0; n < N; ++n)
    if (g.species[n] < 0 || g.species[n] >= nspecies)
      throw Error("invalid graph: node " + std::to_string(n) + " has species index " +
                  std::to_string(g.species[n]) + ", the model has " + std::to_string(nspecies) +
                  " species");
  for (int64_t e = 0; e < E; ++e) {
    if (g.edge_src[e] < 0 || g.edge_src[e] >= N || g.edge_dst[e] < 0 || g.edge_dst[e] >= N)
      throw Error("invalid graph: edge " + std::to_string(e) + " = (" +
                  std::to_string(g.edge_src[e]) + ", " + std::to_string(g.edge_dst[e]) +
                  ") is outside nodes 0.." + std::to_string(N - 1));
    check_edge_vector(g, e);
  }
}

void reset_result(const Graph &g, int nv, Result &r)
{
  r.energy = 0.0;
  for (double &w : r.virial) w = 0.0;
  r.atom_energy.assign(static_cast<size_t>(g.n_local), 0.0);
  r.forces.assign(static_cast<size_t>(g.num_nodes * 3), 0.0);
  if (nv) r.atom_virial.assign(static_cast<size_t>(g.num_nodes * nv), 0.0);
  else r.atom_virial.clear();
}

struct GraphTensors {
  torch::Tensor species, edge_index, edge_vec;
};

GraphTensors graph_tensors(const Graph &g, torch::Device device, torch::ScalarType dtype)
{
  const int64_t N = g.num_nodes, E = g.num_edges;
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  GraphTensors t;
  t.species = torch::from_blob(const_cast<int64_t *>(g.species), {N}, i64)
                  .to(device, torch::kInt64, false, true);
  torch::Tensor edge_index = torch::empty({2, E}, i64);
  if (E > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), g.edge_src, sizeof(int64_t) * E);
    std::memcpy(edge_index.data_ptr<int64_t>() + E, g.edge_dst, sizeof(int64_t) * E);
  }
  t.edge_index = edge_index.to(device);
  torch::Tensor edge_vec =
      E > 0 ? torch::from_blob(const_cast<double *>(g.edge_vec), {E, 3},
                               torch::TensorOptions().dtype(torch::kFloat64))
            : torch::zeros({0, 3}, torch::TensorOptions().dtype(torch::kFloat64));
  // always a copy: the model turns on requires_grad for its edge_vec input
  t.edge_vec = edge_vec.to(device, dtype, false, true);
  return t;
}

// Forces and virials in double precision from g_e = dE/d(edge_vec[e]) (see model.h).
void add_edge_results(const Graph &g, const double *grad, int nv, Result &r)
{
  double *F = r.forces.data();
  double *AV = nv ? r.atom_virial.data() : nullptr;
  double W[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};    // row-major W_ab = -sum r_a g_b
  for (int64_t e = 0; e < g.num_edges; ++e) {
    const int64_t i = g.edge_src[e], j = g.edge_dst[e];
    const double *gv = grad + 3 * e;
    const double *rv = g.edge_vec + 3 * e;
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
  check_finite_outputs(r, g.num_nodes, g.n_local);
  r.virial[0] = W[0];
  r.virial[1] = W[4];
  r.virial[2] = W[8];
  r.virial[3] = W[1];
  r.virial[4] = W[2];
  r.virial[5] = W[5];
}

// r.energy and r.atom_energy from the model's outputs (any device, any float dtype).
void store_energies(const torch::Tensor &energy, const torch::Tensor &atom_energy, Result &r)
{
  const torch::Tensor e = atom_energy.to(torch::kCPU, torch::kFloat64).contiguous();
  if (energy.numel() != 1 || e.numel() != static_cast<int64_t>(r.atom_energy.size()))
    throw Error("the model returned " + std::to_string(energy.numel()) + " energies and " +
                std::to_string(e.numel()) + " atom energies; expected 1 and " +
                std::to_string(r.atom_energy.size()));
  r.energy = energy.item<double>();
  std::memcpy(r.atom_energy.data(), e.data_ptr<double>(), sizeof(double) * r.atom_energy.size());
}

// Runs one evaluation of the module; a torch error becomes hienet::Error naming the file.
template <typename Evaluation>
void run_model(const std::string &path, Evaluation &&evaluation)
{
  try {
    evaluation();
  } catch (const c10::Error &e) {
    throw Error("evaluation of HIENet model " + in_quotes(path) + " failed: " + short_message(e));
  }
}

}    // namespace

void Model::validate(const Graph &g) const
{
  check_graph(g, static_cast<int64_t>(impl_->meta.species.size()));
}

void Model::evaluate(const Graph &g, AtomVirial atom_virial, Result &r)
{
  const int64_t E = g.num_edges, n_local = g.n_local;
  check_graph(g, static_cast<int64_t>(impl_->meta.species.size()));
  const int nv = static_cast<int>(atom_virial);
  reset_result(g, nv, r);
  if (g.num_nodes == 0) return;    // an empty domain: explicit zeros, the model is not called

  torch::Tensor edge_grad;
  run_model(impl_->path, [&] {
    GraphTensors t = graph_tensors(g, impl_->device, impl_->dtype);
    std::vector<torch::jit::IValue> inputs{t.species, t.edge_index, t.edge_vec, n_local};
    torch::jit::IValue out;
    {
      PlainInterpreter plain;
      out = impl_->module.forward(inputs);
    }
    if (!out.isTuple() || out.toTupleRef().elements().size() != 3)
      throw Error("HIENet model " + in_quotes(impl_->path) +
                  " forward() did not return (energy, atom_energy, edge_grad) (FORMAT.md)");
    const auto &elems = out.toTupleRef().elements();
    torch::Tensor energy = elems[0].toTensor().to(torch::kCPU, torch::kFloat64);
    torch::Tensor atom_energy =
        elems[1].toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    edge_grad = elems[2].toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    if (energy.numel() != 1 || atom_energy.numel() != n_local ||
        edge_grad.dim() != 2 || edge_grad.size(0) != E || edge_grad.size(1) != 3)
      throw Error("HIENet model " + in_quotes(impl_->path) + " returned shapes energy " +
                  std::to_string(energy.numel()) + " values, atom_energy " +
                  std::to_string(atom_energy.numel()) + " values, edge_grad " +
                  c10::str(edge_grad.sizes()) + "; expected 1, " + std::to_string(n_local) +
                  ", [" + std::to_string(E) + ", 3]");
    store_energies(energy, atom_energy, r);
  });
  add_edge_results(g, edge_grad.data_ptr<double>(), nv, r);
}

void Model::evaluate_exchange(const Graph &g, FeatureExchange &exchange, AtomVirial atom_virial,
                              Result &r)
{
  const int64_t n_local = g.n_local;
  check_graph(g, static_cast<int64_t>(impl_->meta.species.size()));
  for (int64_t e = 0; e < g.num_edges; ++e)
    if (g.edge_src[e] >= n_local)
      throw Error("invalid graph for evaluate_exchange: edge " + std::to_string(e) + " = (" +
                  std::to_string(g.edge_src[e]) + ", " + std::to_string(g.edge_dst[e]) +
                  ") is centred on a ghost node (n_local=" + std::to_string(n_local) + ")");
  const int nv = static_cast<int>(atom_virial);
  reset_result(g, nv, r);
  const RowType rows = impl_->dtype == torch::kFloat32 ? RowType::Float32 : RowType::Float64;
  if (g.num_nodes == 0) {
    exchange_without_nodes(impl_->meta.exchange_widths, rows, exchange);
    return;
  }

  torch::Tensor edge_grad;
  run_model(impl_->path, [&] {
    GraphTensors t = graph_tensors(g, impl_->device, impl_->dtype);
    PlainInterpreter plain;
    StagedOutput out = evaluate_staged(impl_->module, impl_->path, impl_->meta.exchange_widths,
                                       t.species, t.edge_index, t.edge_vec, n_local, exchange);
    edge_grad = out.edge_grad.to(torch::kCPU, torch::kFloat64).contiguous();
    store_energies(out.energy, out.atom_energy, r);
  });
  add_edge_results(g, edge_grad.data_ptr<double>(), nv, r);
}

}    // namespace hienet
