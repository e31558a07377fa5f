// The step of the runtime (internal; Model::evaluate and evaluate_exchange use it): what
// travels between host and device per evaluation, and where forces are assembled. Two modes
// (model.h, StepMode): Host, the loops of the CPU, and Device, the lean step of a GPU:
//
//   upload    one host -> device copy from one staging buffer (pinned where CUDA exists):
//             the edge inputs of the step (positions and one bit per candidate pair, or the
//             edge vectors of an edge-array graph) and, after a topology change only, the
//             topology (species, pairs or edge index, the groupings of the force assembly,
//             the owners with images of graph exchange). The topology stays on the device
//             while Graph::topology keeps its serial.
//   download  forces, global and per-node virials assembled on the device in float64 from
//             the model's per-edge gradients, packed with the energies into one tensor and
//             copied to the host once.
//   exchange  graph exchange copies only the rows of the owners with images (device ->
//             host -> device) and of the ghosts, through host tables kept per row width.
//
// Nothing else synchronises host and device: the checks (indices, edge lengths) run on the
// host before the upload, the checks of the outputs on the downloaded values.
//
// Host mode forms the edges and assembles forces and virials in host loops (in double, in
// edge order) and uploads species, edge index and edge vectors, downloads the outputs, each
// step. The exchange and the checks are the same in both modes.
#ifndef HIENET_DEVICE_STEP_H
#define HIENET_DEVICE_STEP_H

#include "hienet/exchange.h"
#include "hienet/model.h"

#include <torch/script.h>

#include <cstdint>
#include <map>
#include <vector>

namespace hienet {

// The device tensors of one step's graph (FORMAT.md's forward() inputs).
struct StepGraph {
  torch::Tensor species;       // [N] int64
  torch::Tensor edge_index;    // [2, E] int64
  torch::Tensor edge_vec;      // [E, 3] model dtype, a fresh tensor (the model may set requires_grad)
};

class DeviceStep {
 public:
  DeviceStep(torch::Device device, torch::ScalarType dtype, bool lean);

  // The host checks of an evaluation (model.h: Model::validate): the topology's indices and
  // species when it is new, the edge lengths always. Throws Error / NodeError.
  void validate(const Graph &g, int64_t nspecies, double cutoff) const;

  // Whether `g` brings a topology this step has not cached (a new serial, or serial 0; for
  // graph exchange also one cached without the owners with images).
  bool topology_is_new(const Graph &g, bool exchange = false) const;

  // graph exchange's conditions on a new topology: every edge centred on an owner; the
  // owners with images that the exchange named, sorted (unique, each < n_local).
  static void check_centred_on_owners(const Graph &g);
  static void check_owners(std::vector<int64_t> &owners, int64_t n_local);

  // Starts the statistics of an evaluation.
  void begin();

  // Checks `g` (as validate) and uploads the step's inputs in one copy. `owners`: the owners
  // with images of graph exchange, with a new topology (ascending, unique, < n_local).
  StepGraph upload(const Graph &g, int64_t nspecies, double cutoff,
                   const std::vector<int64_t> *owners = nullptr);
  // graph exchange: the same, with the owners of a new topology (topology_is_new(g, true))
  StepGraph upload_exchange(const Graph &g, int64_t nspecies, double cutoff,
                            const std::vector<int64_t> &owners);

  // A process without nodes keeps the serial too, so that it asks its exchange for the
  // owners with images at the same calls as the others.
  void remember_empty_topology(const Graph &g);

  // Forces and virials (model.h) from the uploaded step and the model's outputs, assembled
  // on the device in float64 and downloaded with the energies in one copy into `r` (sized
  // by the caller). nv: 0, 6 or 9 per-node virial components.
  void download(const torch::Tensor &energy, const torch::Tensor &atom_energy,
                const torch::Tensor &edge_grad, int nv, Result &r);

  // graph exchange: x [n_local, W] on the device -> [N, W] with the ghost rows of the
  // exchange (a new tensor); g [N, W] -> [n_local, W] with the ghost rows added into their
  // owners. Only the owners with images and the ghost rows travel.
  torch::Tensor exchange_forward(const torch::Tensor &x, int64_t num_nodes, FeatureExchange &exchange);
  torch::Tensor exchange_reverse(const torch::Tensor &g, int64_t n_local, FeatureExchange &exchange);

  const StepStats &stats() const { return stats_; }
  torch::Device device() const { return device_; }

 private:
  // What stays on the device between topology changes.
  struct Topology {
    uint64_t serial = 0;
    bool valid = false;
    bool from_pairs = false;
    int64_t num_nodes = 0, n_local = 0, num_pairs = 0, num_points = 0;
    torch::Tensor species;                          // [N]
    torch::Tensor pair_nodes;                       // [2, P] node_i, node_j (edge form: edge index)
    torch::Tensor pair_points;                      // [2, P] point_i, point_j (pairs only)
    torch::Tensor by_centre, centre_offsets;        // pairs grouped by node_i: [P], [N + 1]
    torch::Tensor by_neighbour, neighbour_offsets;  // pairs grouped by node_j
    bool has_owners = false;                        // graph exchange asked for them
    std::vector<int64_t> owners;                    // owners with images (graph exchange)
    torch::Tensor owners_device;                    // [S]
  };
  // This step's edges on the device.
  struct Edges {
    int64_t count = 0;
    torch::Tensor active;    // [E] pairs that are edges (pairs only)
    torch::Tensor vec64;     // [E, 3] float64, Å
  };
  // A host table of every node's row for the exchanges of one row width.
  struct HostTable {
    torch::Tensor rows;      // [capacity, W], model dtype
    uint64_t filled_for = 0;    // topology upload after which its owner rows were set to NaN
  };

  // Host mode: this step's edges on the host.
  struct HostEdges {
    std::vector<int64_t> src, dst;    // pair graphs: filled by the cutoff pass
    std::vector<double> vec;
    const int64_t *src_data = nullptr, *dst_data = nullptr;
    const double *vec_data = nullptr;
  };

  torch::Device device_;
  torch::ScalarType dtype_;
  bool lean_;                // StepMode::Device
  bool pinned_;              // host staging buffers in page-locked memory (CUDA devices)
  HostEdges host_;
  Topology topo_;
  Edges edges_;
  StepStats stats_;
  torch::Tensor staging_;    // the per-step upload buffer (bytes), reused
  torch::Tensor packed_;     // the download buffer (float64), reused
  torch::Tensor sent_rows_;  // exchange: the owners' rows in transit (bytes), reused
  torch::Tensor bit_shifts_, lammps_order_;    // small constants on the device
  std::map<int, HostTable> tables_;

  StepGraph upload_host(const Graph &g, bool fresh, const std::vector<int64_t> *owners,
                        double cutoff);
  void download_host(const torch::Tensor &energy, const torch::Tensor &atom_energy,
                     const torch::Tensor &edge_grad, int nv, Result &r);
  void remember(const Graph &g, const std::vector<int64_t> *owners);
  torch::Tensor host_bytes(torch::Tensor &cache, int64_t bytes, bool reuse);
  void check_cached_sizes(const Graph &g) const;
  torch::Tensor per_pair(const torch::Tensor &edge_values);
  torch::Tensor group_sum(const torch::Tensor &pair_values, const torch::Tensor &order,
                          const torch::Tensor &offsets);
  HostTable &table(int width, int64_t num_nodes);
};

}    // namespace hienet

#endif
