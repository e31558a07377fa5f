// HIENet C++ runtime: load an exported model file (export/FORMAT.md, format version 2)
// and evaluate it on a graph.
//
// This header is deliberately free of torch includes (pimpl): LAMMPS bundles fmt 10 and
// torch bundles fmt 12 under the same include guards, so a translation unit that includes
// LAMMPS headers must never see torch headers. Everything torch lives in src/model.cpp.
//
// Graph convention (the same as FORMAT.md):
//   nodes 0 .. N-1; nodes 0 .. n_local-1 are counted in the energy, the rest are ghosts;
//   directed edge e = (edge_src[e], edge_dst[e]) = (i, j), edge_vec[e] = x_j - x_i (Å);
//   species[n] indexes the model's species list (metadata "species").
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

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hienet {

// The only exported-file format this build reads.
constexpr int kFormatVersion = 2;

// Every failure of the runtime (unreadable file, bad metadata, bad graph, evaluation error)
// is reported as hienet::Error with a message that names the file or the offending value.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
  std::string convolution;              // "fused" or "e3nn" (empty in files that omit it)
  std::vector<std::string> custom_ops;  // e.g. "hienet::convolution": must be registered
  std::string json;                     // the raw metadata.json text
};

enum class Device { Auto, CPU, CUDA };

struct Options {
  // Auto: CUDA when torch sees a GPU, otherwise CPU. CUDA: error if there is none.
  Device device = Device::Auto;
  // Node-local MPI rank; the GPU used is local_rank % number of visible GPUs.
  int local_rank = 0;
  // Torch intra-op threads (a process-wide torch setting):
  //   > 0: use that many;  0: leave torch's current setting alone;
  //   < 0: read the environment variable HIENET_NUM_THREADS, default 1.
  int num_threads = -1;
};

// Which per-node virial evaluate() fills.
enum class AtomVirial { None = 0, Six = 6, Nine = 9 };

// A graph handed to evaluate(); the arrays belong to the caller.
struct Graph {
  int64_t num_nodes = 0;
  int64_t n_local = 0;
  const int64_t *species = nullptr;    // [num_nodes]
  int64_t num_edges = 0;
  const int64_t *edge_src = nullptr;   // [num_edges], centre i
  const int64_t *edge_dst = nullptr;   // [num_edges], neighbour j
  const double *edge_vec = nullptr;    // [num_edges * 3], x_j - x_i
};

// Outputs of evaluate(); the vectors are resized (and reused) by each call.
struct Result {
  double energy = 0.0;                 // sum over local nodes (eV)
  std::vector<double> atom_energy;     // [n_local]
  std::vector<double> forces;          // [num_nodes * 3]
  double virial[6] = {0, 0, 0, 0, 0, 0};
  std::vector<double> atom_virial;     // [num_nodes * 6] or [num_nodes * 9], or empty
};

class Model {
 public:
  // Loads and validates `path`; throws hienet::Error naming the file on any problem.
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
  int num_threads() const;         // torch intra-op threads in effect after loading

  // Index of `symbol` in species(), or -1.
  int species_index(const std::string &symbol) const;

  // Evaluates the model on `graph` and fills `result` (see the top of this file).
  // An empty graph (num_nodes == 0) gives zeros without calling the model.
  void evaluate(const Graph &graph, AtomVirial atom_virial, Result &result);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads and validates only the metadata of an exported file.
Metadata read_metadata(const std::string &path);

// Version of the torch library this runtime runs on, e.g. "2.13.0".
std::string torch_version();

}    // namespace hienet

#endif
