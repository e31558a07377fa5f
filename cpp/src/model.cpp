// HIENet runtime implementation. With archive.cpp, the only translation units that include
// torch (metadata.cpp reads JSON without it).
#include "hienet/model.h"

#include "archive.h"
#include "device_step.h"
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

// StepMode::Auto: HIENET_STEP if set, else Device on a GPU and Host on the CPU.
StepMode resolve_step(StepMode requested, const torch::Device &device)
{
  if (requested != StepMode::Auto) return requested;
  const char *env = std::getenv("HIENET_STEP");
  const std::string value = env ? env : "";
  if (value == "host") return StepMode::Host;
  if (value == "device") return StepMode::Device;
  if (!value.empty() && value != "auto")
    throw Error("HIENET_STEP must be auto, host or device, got '" + value + "'");
  return device.is_cuda() ? StepMode::Device : StepMode::Host;
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
  StepMode step_mode = StepMode::Host;
  std::unique_ptr<DeviceStep> step;    // staging buffers and the topology kept on the device
  int64_t num_species() const { return static_cast<int64_t>(meta.species.size()); }
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
  impl_->step_mode = resolve_step(options.step, impl_->device);
  impl_->step = std::make_unique<DeviceStep>(impl_->device, impl_->dtype,
                                             impl_->step_mode == StepMode::Device);
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
const StepStats &Model::last_step() const { return impl_->step->stats(); }
StepMode Model::step_mode() const { return impl_->step_mode; }
int Model::num_threads() const { return impl_->threads; }

int Model::species_index(const std::string &symbol) const
{
  const auto &s = impl_->meta.species;
  for (size_t k = 0; k < s.size(); ++k)
    if (s[k] == symbol) return static_cast<int>(k);
  return -1;
}

namespace {

void reset_result(const Graph &g, int nv, Result &r)
{
  r.energy = 0.0;
  for (double &w : r.virial) w = 0.0;
  r.atom_energy.assign(static_cast<size_t>(g.n_local), 0.0);
  r.forces.assign(static_cast<size_t>(g.num_nodes * 3), 0.0);
  if (nv) r.atom_virial.assign(static_cast<size_t>(g.num_nodes * nv), 0.0);
  else r.atom_virial.clear();
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
  impl_->step->validate(g, impl_->num_species(), impl_->meta.cutoff);
}

void Model::evaluate(const Graph &g, AtomVirial atom_virial, Result &r)
{
  DeviceStep &step = *impl_->step;
  step.begin();
  const int64_t n_local = g.n_local;
  const int nv = static_cast<int>(atom_virial);
  if (g.num_nodes == 0) {    // an empty domain: explicit zeros, the model is not called
    step.validate(g, impl_->num_species(), impl_->meta.cutoff);
    reset_result(g, nv, r);
    return;
  }
  run_model(impl_->path, [&] {
    const StepGraph t = step.upload(g, impl_->num_species(), impl_->meta.cutoff);
    reset_result(g, nv, r);
    const int64_t E = t.edge_vec.size(0);
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
    const torch::Tensor energy = elems[0].toTensor(), atom_energy = elems[1].toTensor();
    const torch::Tensor edge_grad = elems[2].toTensor();
    if (energy.numel() != 1 || atom_energy.numel() != n_local || edge_grad.dim() != 2 ||
        edge_grad.size(0) != E || edge_grad.size(1) != 3)
      throw Error("HIENet model " + in_quotes(impl_->path) + " returned shapes energy " +
                  std::to_string(energy.numel()) + " values, atom_energy " +
                  std::to_string(atom_energy.numel()) + " values, edge_grad " +
                  c10::str(edge_grad.sizes()) + "; expected 1, " + std::to_string(n_local) +
                  ", [" + std::to_string(E) + ", 3]");
    step.download(energy, atom_energy, edge_grad, nv, r);
  });
  check_finite_outputs(r, g.num_nodes, n_local);
}

void Model::evaluate_exchange(const Graph &g, FeatureExchange &exchange, AtomVirial atom_virial,
                              Result &r)
{
  DeviceStep &step = *impl_->step;
  step.begin();
  const int64_t n_local = g.n_local;
  const int nv = static_cast<int>(atom_virial);
  const bool new_topology = step.topology_is_new(g, /*exchange=*/true);
  step.validate(g, impl_->num_species(), impl_->meta.cutoff);
  if (new_topology) DeviceStep::check_centred_on_owners(g);
  reset_result(g, nv, r);
  const RowType rows = impl_->dtype == torch::kFloat32 ? RowType::Float32 : RowType::Float64;
  // every process asks at the same calls (the exchange may communicate)
  std::vector<int64_t> owners;
  if (new_topology) {
    exchange.owners_with_images(g.num_nodes, n_local, owners);
    DeviceStep::check_owners(owners, n_local);
  }
  if (g.num_nodes == 0) {
    step.remember_empty_topology(g);
    exchange_without_nodes(impl_->meta.exchange_widths, rows, exchange);
    return;
  }

  run_model(impl_->path, [&] {
    // owners: asked for above if the topology is new, which upload_exchange decides alike
    const StepGraph t = step.upload_exchange(g, impl_->num_species(), impl_->meta.cutoff, owners);
    PlainInterpreter plain;
    const StagedOutput out = evaluate_staged(impl_->module, impl_->path, impl_->meta.exchange_widths,
                                             t.species, t.edge_index, t.edge_vec, n_local, step,
                                             exchange);
    if (out.energy.numel() != 1 || out.atom_energy.numel() != n_local)
      throw Error("the model returned " + std::to_string(out.energy.numel()) + " energies and " +
                  std::to_string(out.atom_energy.numel()) + " atom energies; expected 1 and " +
                  std::to_string(n_local));
    step.download(out.energy, out.atom_energy, out.edge_grad, nv, r);
  });
  check_finite_outputs(r, g.num_nodes, n_local);
}

}    // namespace hienet
