// pybind11 module hienet._runtime: the C++ runtime, driven from Python (tests, debugging).
// It exchanges numpy arrays only, so it does not need torch's Python bindings.
#include "hienet/allocator.h"
#include "hienet/model.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

hienet::Device parse_device(const std::string &name)
{
  if (name == "auto") return hienet::Device::Auto;
  if (name == "cpu") return hienet::Device::CPU;
  if (name == "cuda") return hienet::Device::CUDA;
  throw py::value_error("device must be 'auto', 'cpu' or 'cuda', got '" + name + "'");
}

hienet::StepMode parse_step(const std::string &name)
{
  if (name == "auto") return hienet::StepMode::Auto;
  if (name == "host") return hienet::StepMode::Host;
  if (name == "device") return hienet::StepMode::Device;
  throw py::value_error("step must be 'auto', 'host' or 'device', got '" + name + "'");
}

template <typename T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

void check_atom_virial(int atom_virial)
{
  if (atom_virial != 0 && atom_virial != 6 && atom_virial != 9)
    throw py::value_error("atom_virial must be 0, 6 or 9");
}

// Runs the evaluation (exchange: evaluate_exchange) and returns evaluate()'s dict.
py::dict run(hienet::Model &model, const hienet::Graph &g, int atom_virial,
             hienet::FeatureExchange *exchange)
{
  hienet::Result r;
  {
    py::gil_scoped_release release;
    const auto av = static_cast<hienet::AtomVirial>(atom_virial);
    if (exchange) model.evaluate_exchange(g, *exchange, av, r);
    else model.evaluate(g, av, r);
  }
  const auto N = static_cast<py::ssize_t>(g.num_nodes);
  py::dict out;
  out["energy"] = r.energy;
  out["atom_energy"] = py::array_t<double>(py::ssize_t(r.atom_energy.size()), r.atom_energy.data());
  out["forces"] = py::array_t<double>({N, py::ssize_t(3)}, r.forces.data());
  out["virial"] = py::array_t<double>(6, r.virial);
  if (atom_virial)
    out["atom_virial"] = py::array_t<double>({N, py::ssize_t(atom_virial)}, r.atom_virial.data());
  return out;
}

py::dict evaluate(hienet::Model &model, const carray<int64_t> &species,
                  const carray<int64_t> &edge_index, const carray<double> &edge_vec,
                  int64_t n_local, int atom_virial, uint64_t topology,
                  hienet::FeatureExchange *exchange = nullptr)
{
  if (species.ndim() != 1) throw py::value_error("species must have shape [N]");
  if (edge_index.ndim() != 2 || edge_index.shape(0) != 2)
    throw py::value_error("edge_index must have shape [2, E]");
  const int64_t E = edge_index.shape(1);
  if (edge_vec.ndim() != 2 || edge_vec.shape(0) != E || edge_vec.shape(1) != 3)
    throw py::value_error("edge_vec must have shape [E, 3] with E = edge_index.shape[1]");
  check_atom_virial(atom_virial);

  hienet::Graph g;
  g.num_nodes = species.shape(0);
  g.n_local = n_local;
  g.species = species.data();
  g.num_edges = E;
  g.edge_src = edge_index.data();
  g.edge_dst = edge_index.data() + E;
  g.edge_vec = edge_vec.data();
  g.topology = topology;
  return run(model, g, atom_virial, exchange);
}

// The lean step's graph: candidate pairs and positions (model.h, struct Pairs).
py::dict evaluate_pairs(hienet::Model &model, const carray<int64_t> &species,
                        const carray<double> &positions, const carray<int64_t> &pair_points,
                        const carray<int64_t> &pair_nodes, int64_t n_local, int atom_virial,
                        double length_unit, uint64_t topology,
                        hienet::FeatureExchange *exchange = nullptr)
{
  if (species.ndim() != 1) throw py::value_error("species must have shape [N]");
  if (positions.ndim() != 2 || positions.shape(1) != 3)
    throw py::value_error("positions must have shape [points, 3]");
  if (pair_points.ndim() != 2 || pair_points.shape(0) != 2)
    throw py::value_error("pair_points must have shape [2, P]");
  const int64_t P = pair_points.shape(1);
  if (pair_nodes.ndim() != 2 || pair_nodes.shape(0) != 2 || pair_nodes.shape(1) != P)
    throw py::value_error("pair_nodes must have shape [2, P] like pair_points");
  check_atom_virial(atom_virial);

  hienet::Pairs p;
  p.num_points = positions.shape(0);
  p.positions = positions.data();
  p.length_unit = length_unit;
  p.num_pairs = P;
  p.point_i = pair_points.data();
  p.point_j = pair_points.data() + P;
  p.node_i = pair_nodes.data();
  p.node_j = pair_nodes.data() + P;
  hienet::Graph g;
  g.num_nodes = species.shape(0);
  g.n_local = n_local;
  g.species = species.data();
  g.pairs = &p;
  g.topology = topology;
  return run(model, g, atom_virial, exchange);
}

py::dict step_stats(const hienet::Model &model)
{
  const hienet::StepStats &s = model.last_step();
  py::dict out;
  out["topology_uploaded"] = s.topology_uploaded;
  out["topology_uploads"] = s.topology_uploads;
  out["num_edges"] = s.num_edges;
  out["uploads"] = s.uploads;
  out["upload_bytes"] = s.upload_bytes;
  out["downloads"] = s.downloads;
  out["download_bytes"] = s.download_bytes;
  out["exchange_copies"] = s.exchange_copies;
  out["exchange_bytes"] = s.exchange_bytes;
  out["owners_with_images"] = s.owners_with_images;
  return out;
}

// Ghost node n (n >= n_local) is an image of owner[n] (< n_local): a whole periodic system
// on one process, the exchange the LAMMPS pair style makes across ranks. Records the calls.
// owners_with_images() names the owners of the ghosts, or (all_owners) keeps the default,
// every owner.
class OwnerExchange : public hienet::FeatureExchange {
 public:
  OwnerExchange(const int64_t *owner, int64_t n_local, bool all_owners) :
      owner_(owner), n_local_(n_local), all_owners_(all_owners)
  {
  }

  void owners_with_images(int64_t num_nodes, int64_t n_local, std::vector<int64_t> &owners) override
  {
    ++owner_queries;
    if (all_owners_) return FeatureExchange::owners_with_images(num_nodes, n_local, owners);
    owners.assign(owner_ + n_local, owner_ + num_nodes);
  }

  void forward(void *rows, int64_t num_nodes, int width, hienet::RowType type) override
  {
    calls.emplace_back("forward", width);
    if (type == hienet::RowType::Float32) copy(static_cast<float *>(rows), num_nodes, width);
    else copy(static_cast<double *>(rows), num_nodes, width);
  }

  void reverse(void *rows, int64_t num_nodes, int width, hienet::RowType type) override
  {
    calls.emplace_back("reverse", width);
    if (type == hienet::RowType::Float32) add(static_cast<float *>(rows), num_nodes, width);
    else add(static_cast<double *>(rows), num_nodes, width);
  }

  std::vector<std::pair<std::string, int>> calls;    // filled without the GIL
  int owner_queries = 0;

 private:
  template <typename T>
  void copy(T *rows, int64_t num_nodes, int width)
  {
    for (int64_t n = n_local_; n < num_nodes; ++n)
      for (int c = 0; c < width; ++c) rows[n * width + c] = rows[owner_[n] * width + c];
  }

  template <typename T>
  void add(T *rows, int64_t num_nodes, int width)
  {
    for (int64_t n = n_local_; n < num_nodes; ++n)
      for (int c = 0; c < width; ++c) rows[owner_[n] * width + c] += rows[n * width + c];
  }

  const int64_t *owner_;
  int64_t n_local_;
  bool all_owners_;
};

void check_owner(const carray<int64_t> &species, const carray<int64_t> &owner, int64_t n_local)
{
  const int64_t N = species.ndim() == 1 ? species.shape(0) : -1;
  if (owner.ndim() != 1 || owner.shape(0) != N)
    throw py::value_error("owner must have shape [N] like species");
  if (n_local < 0 || n_local > N) throw py::value_error("n_local must lie in [0, N]");
  for (int64_t n = n_local; n < N; ++n)
    if (owner.data()[n] < 0 || owner.data()[n] >= n_local)
      throw py::value_error("owner[" + std::to_string(n) + "] = " +
                            std::to_string(owner.data()[n]) + " is not a node < n_local");
}

py::dict with_exchange_record(py::dict out, const OwnerExchange &exchange)
{
  out["exchanges"] = py::cast(exchange.calls);
  out["owner_queries"] = exchange.owner_queries;
  return out;
}

py::dict evaluate_exchange(hienet::Model &model, const carray<int64_t> &species,
                           const carray<int64_t> &edge_index, const carray<double> &edge_vec,
                           int64_t n_local, const carray<int64_t> &owner, int atom_virial,
                           uint64_t topology, bool all_owners)
{
  check_owner(species, owner, n_local);
  OwnerExchange exchange(owner.data(), n_local, all_owners);
  return with_exchange_record(
      evaluate(model, species, edge_index, edge_vec, n_local, atom_virial, topology, &exchange),
      exchange);
}

py::dict evaluate_pairs_any(hienet::Model &model, const carray<int64_t> &species,
                            const carray<double> &positions, const carray<int64_t> &pair_points,
                            const carray<int64_t> &pair_nodes, int64_t n_local, int atom_virial,
                            double length_unit, uint64_t topology, const py::object &owner,
                            bool all_owners)
{
  if (owner.is_none())
    return evaluate_pairs(model, species, positions, pair_points, pair_nodes, n_local, atom_virial,
                          length_unit, topology);
  const auto owners = owner.cast<carray<int64_t>>();
  check_owner(species, owners, n_local);
  OwnerExchange exchange(owners.data(), n_local, all_owners);
  return with_exchange_record(evaluate_pairs(model, species, positions, pair_points, pair_nodes,
                                             n_local, atom_virial, length_unit, topology, &exchange),
                              exchange);
}

}    // namespace

PYBIND11_MODULE(_runtime, m)
{
  m.doc() = "HIENet C++ runtime (the evaluator behind pair_style hienet).";
  m.attr("FORMAT_VERSION") = hienet::kFormatVersion;
  m.def("torch_version", &hienet::torch_version, "torch version the runtime was built against");

  // hienet.Error -> hienet._runtime.ModelError, a RuntimeError
  py::register_exception<hienet::Error>(m, "ModelError", PyExc_RuntimeError);

  m.def(
      "read_metadata",
      [](const std::string &path) {
        return py::module_::import("json").attr("loads")(hienet::read_metadata(path).json);
      },
      py::arg("path"), "Validated metadata.json of an exported model file, as a dict.");

  m.def("configure_allocator", &hienet::configure_allocator,
        "Keep the model's per-step tensors in malloc's heap (hienet/allocator.h; "
        "HIENET_MALLOC=system: leave malloc alone); returns what is in effect.");

  m.def("archive_digest", &hienet::archive_digest, py::arg("path"),
        "Recompute the archive digest of an exported file (export/FORMAT.md, Integrity).");

  py::class_<hienet::Model>(m, "Model", R"doc(
An exported HIENet model loaded by the C++ runtime.

Parameters
----------
path : str
    File written by hienet-export (export/FORMAT.md, format version 2).
device : {"auto", "cpu", "cuda"}
    "auto" uses CUDA when torch sees a GPU.
local_rank : int
    Node-local rank; the GPU used is local_rank % number of GPUs.
num_threads : int
    Torch intra-op threads (process-wide): > 0 sets it, 0 leaves it alone,
    < 0 reads HIENET_NUM_THREADS (default 1).
step : {"auto", "host", "device"}
    Where edges are formed and forces assembled (hienet::StepMode): "device" is the lean
    GPU step (one upload, tensor operations, one download), "host" the CPU's loops; "auto"
    reads HIENET_STEP, else picks device on a GPU and host on the CPU.
)doc")
      .def(py::init([](const std::string &path, const std::string &device, int local_rank,
                       int num_threads, const std::string &step) {
             hienet::Options o;
             o.device = parse_device(device);
             o.local_rank = local_rank;
             o.num_threads = num_threads;
             o.step = parse_step(step);
             return new hienet::Model(path, o);
           }),
           py::arg("path"), py::arg("device") = "auto", py::arg("local_rank") = 0,
           py::arg("num_threads") = -1, py::arg("step") = "auto")
      .def_property_readonly("step", [](const hienet::Model &model) {
        return model.step_mode() == hienet::StepMode::Device ? "device" : "host";
      })
      .def_property_readonly("path", &hienet::Model::path)
      .def_property_readonly("cutoff", &hienet::Model::cutoff)
      .def_property_readonly("species", &hienet::Model::species)
      .def_property_readonly("num_message_passing_layers",
                             &hienet::Model::num_message_passing_layers)
      .def_property_readonly("dtype", &hienet::Model::dtype)
      .def_property_readonly("device", &hienet::Model::device)
      .def_property_readonly("num_threads", &hienet::Model::num_threads)
      .def_property_readonly("metadata",
                             [](const hienet::Model &model) {
                               return py::module_::import("json").attr("loads")(
                                   model.metadata().json);
                             })
      .def_property_readonly("last_step", &step_stats, R"doc(
Host/device traffic of the last evaluation (hienet::StepStats): topology_uploaded (bool),
topology_uploads (since loading), num_edges, uploads/upload_bytes and downloads/download_bytes
(exchanges excluded), exchange_copies/exchange_bytes, owners_with_images.
)doc")
      .def("evaluate_pairs", &evaluate_pairs_any, py::arg("species"), py::arg("positions"),
           py::arg("pair_points"), py::arg("pair_nodes"), py::arg("n_local"),
           py::arg("atom_virial") = 0, py::arg("length_unit") = 1.0, py::arg("topology") = 0,
           py::arg("owner") = py::none(), py::arg("all_owners") = false, R"doc(
Evaluate the lean step's graph (model.h, struct Pairs): candidate pairs p from node
pair_nodes[0, p] to pair_nodes[1, p] with positions[pair_points[., p]]; those closer than the
cutoff (x length_unit, the positions' length unit per Å) are this evaluation's edges, with
edge_vec = (x_j - x_i) / length_unit. topology: the serial of species, nodes and pairs (the
model keeps them on its device while it is unchanged; 0: unknown). With owner ([N], as in
evaluate_exchange) the evaluation is staged with the feature exchange; all_owners: the
exchange names every owner as having images (the default of FeatureExchange).
)doc")
      .def("evaluate_exchange", &evaluate_exchange, py::arg("species"), py::arg("edge_index"),
           py::arg("edge_vec"), py::arg("n_local"), py::arg("owner"), py::arg("atom_virial") = 0,
           py::arg("topology") = 0, py::arg("all_owners") = false,
           R"doc(
Stage-by-stage evaluation with a feature exchange (what pair_style hienet does across MPI
ranks): edges must be centred on nodes < n_local; ghost node n >= n_local is an image of
node owner[n] < n_local. Returns evaluate()'s dict for the ghost-extended graph (forces and
per-node virials of ghosts not yet added into their owners) plus "exchanges", the list of
(direction, width) calls the runtime made.
)doc")
      .def("evaluate", [](hienet::Model &model, const carray<int64_t> &species,
                          const carray<int64_t> &edge_index, const carray<double> &edge_vec,
                          int64_t n_local, int atom_virial, uint64_t topology) {
             return evaluate(model, species, edge_index, edge_vec, n_local, atom_virial, topology);
           }, py::arg("species"), py::arg("edge_index"),
           py::arg("edge_vec"), py::arg("n_local"), py::arg("atom_virial") = 0,
           py::arg("topology") = 0,
           R"doc(
Evaluate on a graph (FORMAT.md convention). Returns a dict with energy (float),
atom_energy [n_local], forces [N, 3] (F[i] += g, F[j] -= g), virial [6] (LAMMPS order
xx yy zz xy xz yz, W = -sum r (x) g) and, if atom_virial is 6 or 9, atom_virial [N, 6|9]
(each edge split half/half; 9 adds yx zx zy). topology: the serial of species and edge
index (kept on the model's device while unchanged; 0: unknown, uploaded every call).
)doc")
      .def("__repr__", [](const hienet::Model &model) {
        std::string s = "hienet._runtime.Model('" + model.path() + "', species=[";
        for (size_t k = 0; k < model.species().size(); ++k)
          s += (k ? ", " : "") + model.species()[k];
        return s + "], cutoff=" + std::to_string(model.cutoff()) +
               ", layers=" + std::to_string(model.num_message_passing_layers()) + ", dtype=" +
               model.dtype() + ", device=" + model.device() + ")";
      });
}
