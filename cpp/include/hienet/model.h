// HIENet C++ runtime: load an exported model file (export/FORMAT.md, format version 2)
// and evaluate it on a graph, in one piece (evaluate) or layer by layer with a feature
// exchange between layers (evaluate_exchange).
//
// This header is deliberately free of torch includes (pimpl): LAMMPS bundles fmt 10 and
// torch bundles fmt 12 under the same include guards, so a translation unit that includes
// LAMMPS headers must never see torch headers. Everything torch lives in src/model.cpp.
//
// Graph convention (the same as FORMAT.md):
//   nodes 0 .. N-1; nodes 0 .. n_local-1 are counted in the energy, the rest are ghosts;
//   directed edge e = (edge_src[e], edge_dst[e]) = (i, j), edge_vec[e] = x_j - x_i (Å);
//   species[n] indexes the model's species list (metadata "species").
// The edges come either as arrays (edge_src, edge_dst, edge_vec) or, in the lean step of
// pair_style hienet, as candidate pairs and positions (struct Pairs): the runtime makes an
// edge of every pair closer than the cutoff and forms its vector on the model's device.
//
// Results, computed in double precision from the model's per-edge gradient g_e = dE/dr_e:
//   forces   F[i] += g_e, F[j] -= g_e                      (eV/Å, per node, ghosts included)
//   virial   W_ab = - sum_e r_e,a g_e,b                    (eV, LAMMPS sign and order
//                                                            xx, yy, zz, xy, xz, yz)
//   per-node virial: each edge's -r_e (x) g_e is split half to i and half to j.
//     6 components: xx, yy, zz, xy, xz, yz;
//     9 components (centroid stress): xx, yy, zz, xy, xz, yz, yx, zx, zy.
#ifndef HIENET_MODEL_H
#define HIENET_MODEL_H

#include "hienet/exchange.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hienet {

// The only exported-file format this build reads (version 1 files lack the archive digest
// and the exchange widths: they are refused with the advice to re-export).
constexpr int kFormatVersion = 2;

// Every failure of the runtime (unreadable file, bad metadata, bad graph, evaluation error)
// is reported as hienet::Error with a message that names the file or the offending value.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad input or output at particular graph nodes, from evaluate(): two nodes closer than
// keys::MIN_ATOM_DISTANCE, a non-finite edge vector, or a non-finite energy or force. The
// message names node indices; callers that know their atoms (pair_style hienet: atom IDs)
// use the fields to name them their own way.
class NodeError : public Error {
 public:
  enum class Kind { Coincident, NonFiniteEdge, NonFiniteOutput };
  NodeError(Kind kind, int64_t node_i, int64_t node_j, double distance, const std::string &what) :
      Error(what), kind(kind), node_i(node_i), node_j(node_j), distance(distance)
  {
  }
  Kind kind;
  int64_t node_i;     // the node (NonFiniteOutput) or the edge's centre
  int64_t node_j;     // the edge's neighbour; -1 for NonFiniteOutput
  double distance;    // |edge_vec| (Coincident), else NaN
};

// Contents of the archive's `metadata.json` (FORMAT.md, "Metadata").
struct Metadata {
  int format_version = 0;
  std::string hienet_version;
  double cutoff = 0.0;                  // Å
  int num_message_passing_layers = 0;   // receptive field = layers * cutoff
  std::vector<std::string> species;     // chemical symbols in index order
  std::string dtype;                    // "float32" or "float64"
  std::string torch_version;            // torch that wrote the file
  std::string model_hash;
  // width of the node features entering interaction k, k = 0 .. K-1: what
  // evaluate_exchange() exchanges before each of them
  std::vector<int> exchange_widths;
  std::string archive_digest;           // "sha1:..." of the archive's records, checked on load
  std::string convolution;              // "fused" or "e3nn" (empty in files that omit it)
  std::vector<std::string> custom_ops;  // e.g. "hienet::convolution": must be registered
  std::string json;                     // the raw metadata.json text
};

enum class Device { Auto, CPU, CUDA };

// Where a step forms its edges and assembles forces and virials.
//   Device: the lean step: one upload (positions and edge bits, the topology only when it
//           changed), edges formed and forces/virials assembled by tensor operations on the
//           model's device in float64, one download. What a GPU runs.
//   Host:   edges and forces on the host (loops), the model's inputs uploaded and its
//           per-edge gradients downloaded each step. The fastest on the CPU, where host loops
//           beat many small tensor operations.
//   Auto:   Device on a GPU, Host on the CPU.
enum class StepMode { Auto, Host, Device };

struct Options {
  // Auto: CUDA when torch sees a GPU, otherwise CPU. CUDA: error if there is none.
  Device device = Device::Auto;
  // Node-local MPI rank; the GPU used is local_rank % number of visible GPUs.
  int local_rank = 0;
  // Torch intra-op threads (a process-wide torch setting):
  //   > 0: use that many;  0: leave torch's current setting alone;
  //   < 0: read the environment variable HIENET_NUM_THREADS, default 1.
  int num_threads = -1;
  // Auto also reads the environment variable HIENET_STEP (auto, host or device): tests run
  // the GPU's step on the CPU with HIENET_STEP=device.
  StepMode step = StepMode::Auto;
};

// Which per-node virial evaluate() fills.
enum class AtomVirial { None = 0, Six = 6, Nine = 9 };

// Edges from positions (the lean step): between two neighbour-list builds the caller keeps a
// fixed list of candidate pairs (every pair of its neighbour list, cutoff + skin) and only the
// positions move. Each evaluation makes an edge of every pair p with
// |x[point_j[p]] - x[point_i[p]]| < cutoff (in caller units: cutoff x length_unit), in pair
// order, from node_i[p] to node_j[p], with edge_vec = (x_j - x_i) / length_unit. Per step
// only the positions and one bit per pair travel to the device, instead of E x 3 edge
// vectors and the edge index (about 20x fewer bytes at a 2 Å skin).
struct Pairs {
  int64_t num_points = 0;
  const double *positions = nullptr;   // [num_points * 3], caller length units
  double length_unit = 1.0;            // caller length units per Å
  int64_t num_pairs = 0;
  const int64_t *point_i = nullptr;    // [num_pairs] the centre's position
  const int64_t *point_j = nullptr;    // [num_pairs] the neighbour's position (an image)
  const int64_t *node_i = nullptr;     // [num_pairs] the centre's graph node
  const int64_t *node_j = nullptr;     // [num_pairs] the neighbour's graph node
};

// A graph handed to evaluate(); the arrays belong to the caller.
struct Graph {
  int64_t num_nodes = 0;
  int64_t n_local = 0;
  const int64_t *species = nullptr;    // [num_nodes]
  int64_t num_edges = 0;
  const int64_t *edge_src = nullptr;   // [num_edges], centre i
  const int64_t *edge_dst = nullptr;   // [num_edges], neighbour j
  const double *edge_vec = nullptr;    // [num_edges * 3], x_j - x_i
  // Set: the edges come from these pairs, and num_edges/edge_src/edge_dst/edge_vec are unused.
  const Pairs *pairs = nullptr;
  // Serial number of the topology: num_nodes, n_local, species and the edges (edge_src and
  // edge_dst, or every field of `pairs` but positions). A Model keeps the topology on its
  // device (with what it derives from it) while callers pass the same nonzero serial, and
  // uploads it again for a new serial or 0 ('unknown'). Callers must change it whenever any
  // of these changes (pair_style hienet: at each neighbour-list build). With
  // evaluate_exchange, every process must change it at the same calls: the exchange is asked
  // which owners have images then (FeatureExchange::owners_with_images), which may communicate.
  uint64_t topology = 0;
};

// Outputs of evaluate(); the vectors are resized (and reused) by each call.
struct Result {
  double energy = 0.0;                 // sum over local nodes (eV)
  std::vector<double> atom_energy;     // [n_local]
  std::vector<double> forces;          // [num_nodes * 3]
  double virial[6] = {0, 0, 0, 0, 0, 0};
  std::vector<double> atom_virial;     // [num_nodes * 6] or [num_nodes * 9], or empty
};

// What the last evaluation moved between host and device. With StepMode::Device that is all
// the step's traffic besides the model itself: one upload (positions and edge bits, plus the
// topology when it changed) and one download (energies, forces, virials); graph exchange adds
// two copies per exchange, of the exchanged rows only. On the CPU the same code runs and the
// copies are counted although nothing moves.
struct StepStats {
  bool topology_uploaded = false;      // the topology was (re)uploaded by this evaluation
  uint64_t topology_uploads = 0;       // since the model was loaded
  int64_t num_edges = 0;
  int64_t uploads = 0, upload_bytes = 0;        // host -> device, exchanges excluded
  int64_t downloads = 0, download_bytes = 0;    // device -> host, exchanges excluded
  int64_t exchange_copies = 0, exchange_bytes = 0;    // both directions, all exchanges
  int64_t owners_with_images = 0;      // owner rows each exchange sends (graph exchange)
};

class Model {
 public:
  // Loads and validates `path` (metadata, archive digest); throws hienet::Error naming the
  // file on any problem.
  explicit Model(const std::string &path, const Options &options = Options());
  ~Model();
  Model(Model &&) noexcept;
  Model &operator=(Model &&) noexcept;
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  const std::string &path() const;
  const Metadata &metadata() const;
  double cutoff() const;
  int num_message_passing_layers() const;
  const std::vector<std::string> &species() const;
  const std::string &dtype() const;
  std::string device() const;      // "cpu" or "cuda:K"
  StepMode step_mode() const;      // Host or Device, as resolved when loading
  int num_threads() const;         // torch intra-op threads in effect after loading

  // Index of `symbol` in species(), or -1.
  int species_index(const std::string &symbol) const;

  // Evaluates the model on `graph` and fills `result` (see the top of this file).
  // An empty graph (num_nodes == 0) gives zeros without calling the model. Throws NodeError
  // for coincident nodes, non-finite edge vectors and non-finite energies or forces.
  void evaluate(const Graph &graph, AtomVirial atom_virial, Result &result);

  // The checks evaluate() and evaluate_exchange() make before calling the model (indices,
  // species, NodeError for coincident nodes and non-finite edge vectors), on their own: a
  // multi-process caller agrees on them before the first exchange.
  void validate(const Graph &graph) const;

  // The same results, computed stage by stage (export/FORMAT.md, "Stage methods") on a
  // graph whose edges are all centred on owners (edge_src < n_local) and whose ghost nodes
  // are images of owners, here or elsewhere: `exchange` copies the features of owners to
  // their ghosts before each equivariant block and sends the gradients of ghost rows back
  // to their owners in the backward pass. Forces and per-node virials of ghost nodes are
  // returned like those of owners (the caller adds them into the owners' atoms).
  // Exchanges happen even when the graph is empty, the same number on every process.
  void evaluate_exchange(const Graph &graph, FeatureExchange &exchange, AtomVirial atom_virial,
                         Result &result);

  // Host/device traffic of the last evaluate() or evaluate_exchange().
  const StepStats &last_step() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads and validates only the metadata of an exported file.
Metadata read_metadata(const std::string &path);

// Recomputes the archive digest of an exported file ("sha1:...", export/FORMAT.md,
// "Integrity"); Model's constructor checks it against the metadata.
std::string archive_digest(const std::string &path);

// Version of the torch library this runtime runs on, e.g. "2.13.0".
std::string torch_version();

}    // namespace hienet

#endif
