// Layer-by-layer evaluation of an exported model with a feature exchange between layers
// (internal to the runtime; Model::evaluate_exchange is the public entry point).
#ifndef HIENET_STAGED_H
#define HIENET_STAGED_H

#include "device_step.h"
#include "hienet/exchange.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace hienet {

// Throws hienet::Error (naming `path`) unless `module` has the stage methods of format
// version 2 with their numbers of arguments (export/FORMAT.md).
void check_stage_methods(torch::jit::Module &module, const std::string &path);

struct StagedOutput {
  torch::Tensor energy;         // float64 scalar: sum over owners
  torch::Tensor atom_energy;    // float64 [n_local]
  torch::Tensor edge_grad;      // model dtype [E, 3]: dE/d(edge_vec), E = total energy
};

// species [N] int64, edge_index [2, E] int64 with edge_index[0] < n_local, edge_vec [E, 3]
// of the model's dtype, all on the model's device; widths[k] = feature width entering
// interaction k. N must be > 0 (see exchange_without_nodes). The rows travel through `step`
// (only those of the owners with images and of the ghosts, device_step.h). Throws
// hienet::Error when a stage returns an unexpected shape; torch errors propagate as c10::Error.
StagedOutput evaluate_staged(torch::jit::Module &module, const std::string &path,
                             const std::vector<int> &widths, const torch::Tensor &species,
                             const torch::Tensor &edge_index, const torch::Tensor &edge_vec,
                             int64_t n_local, DeviceStep &step, FeatureExchange &exchange);

// The exchanges evaluate_staged makes, for a process without nodes: it relays nothing of
// its own but must take part in every exchange, in the same order.
void exchange_without_nodes(const std::vector<int> &widths, RowType type,
                            FeatureExchange &exchange);

}    // namespace hienet

#endif
