// Layer-by-layer evaluation with a feature exchange between message-passing layers.
//
// Forward, on a graph whose edges are centred on owners (edge_index[0] < n_local):
//   (radial, envelope, sh) = edge_features(edge_vec)
//   x = embed(species)                              ghosts embed their own species
//   x = invariant_layer(x, flip(edge_index), ..., n_local)
//                                                   it sums at edge_index[1]: flipped, every
//                                                   owner receives the messages of its edges
//                                                   (they depend on |r| only)
//   for k = 0 .. K-1:
//     x = exchange.forward(x)                       ghost rows := owner rows
//     x = interaction(k, x, edge_index, ..., n_local)   sums at edge_index[0], the owner
//   E = sum readout(x)
// Stages compute the owner rows only (n_out = n_local): ghost rows are only read, and the
// exchange fills them in.
//
// Backward, stage by stage with torch::autograd::grad: each stage ran on detached leaves
// (its node input, and radial/envelope/sh shared by all stages), so the gradient of the
// total energy with respect to a stage's input is that stage's backward of the gradient
// of its output. Before it becomes the output gradient of the previous stage, the rows of
// ghost nodes are added into their owners (exchange.reverse) and dropped: the previous
// stage has no ghost rows of its own. The gradients of
// radial/envelope/sh are summed over stages and go through edge_features once, to edge_vec.
#include "staged.h"

#include "hienet/model.h"

#include <torch/autograd.h>

#include <utility>

namespace hienet {

void check_stage_methods(torch::jit::Module &module, const std::string &path)
{
  // name and number of arguments after self (FORMAT.md, "Stage methods")
  const std::pair<const char *, size_t> stages[] = {{"embed", 1}, {"edge_features", 1},
                                                    {"invariant_layer", 5}, {"interaction", 6},
                                                    {"readout", 2}};
  for (const auto &stage : stages) {
    auto method = module.find_method(stage.first);
    if (!method)
      throw Error("HIENet model file '" + path + "' has no " + stage.first +
                  "() stage method (export/FORMAT.md); re-export it with hienet-export");
    const size_t given = method->function().getSchema().arguments().size() - 1;
    if (given != stage.second)
      throw Error("HIENet model file '" + path + "': stage method " + stage.first + "() takes " +
                  std::to_string(given) + " arguments, format version 2 has " +
                  std::to_string(stage.second) + "; re-export it with hienet-export");
  }
}

namespace {

void accumulate(torch::Tensor &sum, const torch::Tensor &g)
{
  if (!g.defined()) return;
  sum = sum.defined() ? sum + g : g;
}

}    // namespace

StagedOutput evaluate_staged(torch::jit::Module &module, const std::string &path,
                             const std::vector<int> &widths, const torch::Tensor &species,
                             const torch::Tensor &edge_index, const torch::Tensor &edge_vec,
                             int64_t n_local, DeviceStep &step, FeatureExchange &exchange)
{
  torch::AutoGradMode grad_mode(true);
  const int64_t N = species.size(0);
  const auto K = static_cast<int64_t>(widths.size());
  auto stage_error = [&](const std::string &what) {
    return Error("HIENet model '" + path + "': " + what + " (export/FORMAT.md, stage methods)");
  };

  // ---- forward ------------------------------------------------------------------------
  torch::Tensor vec = edge_vec.detach().requires_grad_(true);
  auto features = module.get_method("edge_features")({vec});
  if (!features.isTuple() || features.toTupleRef().elements().size() != 3)
    throw stage_error("edge_features() did not return (radial, envelope, sh)");
  std::vector<torch::Tensor> edge_out, edge_leaf;
  for (const auto &v : features.toTupleRef().elements()) {
    edge_out.push_back(v.toTensor());
    edge_leaf.push_back(v.toTensor().detach().requires_grad_(true));
  }
  const torch::Tensor &radial = edge_leaf[0], &envelope = edge_leaf[1], &sh = edge_leaf[2];

  torch::Tensor x0 = module.get_method("embed")({species}).toTensor();
  // inputs[k]: exchanged input of interaction k; outputs[s]: owner rows of stage s
  std::vector<torch::Tensor> inputs, outputs;
  outputs.push_back(module.get_method("invariant_layer")({x0, edge_index.flip(0), radial,
                                                          envelope, n_local}).toTensor());
  for (int64_t k = 0; k < K; ++k) {
    const torch::Tensor &x = outputs.back();
    if (x.dim() != 2 || x.size(0) != n_local || x.size(1) != widths[k])
      throw stage_error("the features entering interaction " + std::to_string(k) + " have shape " +
                        c10::str(x.sizes()) + ", metadata exchange_widths says [" +
                        std::to_string(n_local) + ", " + std::to_string(widths[k]) + "]");
    inputs.push_back(step.exchange_forward(x, N, exchange).requires_grad_(true));
    outputs.push_back(module.get_method("interaction")({k, inputs.back(), edge_index, radial, sh,
                                                        n_local}).toTensor());
  }
  if (outputs.back().dim() < 1 || outputs.back().size(0) != n_local)
    throw stage_error("the last stage returned shape " + c10::str(outputs.back().sizes()) +
                      " for n_out = " + std::to_string(n_local));
  torch::Tensor atom_energy =
      module.get_method("readout")({outputs.back(), species.narrow(0, 0, n_local)})
          .toTensor()
          .to(torch::kFloat64);
  if (atom_energy.dim() != 1 || atom_energy.size(0) != n_local)
    throw stage_error("readout() returned shape " + c10::str(atom_energy.sizes()) +
                      ", expected [" + std::to_string(n_local) + "]");
  torch::Tensor energy = atom_energy.sum();

  // ---- backward, stage by stage -------------------------------------------------------
  torch::Tensor grad_radial, grad_envelope, grad_sh;
  torch::Tensor g;    // gradient of the total energy w.r.t. outputs[s]
  if (energy.requires_grad())
    g = torch::autograd::grad({energy}, {outputs.back()}, {}, false, false, true)[0];
  if (!g.defined()) g = torch::zeros_like(outputs.back());
  for (int64_t k = K - 1; k >= 0; --k) {
    auto grads = torch::autograd::grad({outputs[k + 1]}, {inputs[k], radial, sh}, {g}, false,
                                       false, true);
    accumulate(grad_radial, grads[1]);
    accumulate(grad_sh, grads[2]);
    g = grads[0].defined() ? grads[0] : torch::zeros_like(inputs[k]);
    g = step.exchange_reverse(g, n_local, exchange);
  }
  if (outputs[0].requires_grad()) {
    auto grads = torch::autograd::grad({outputs[0]}, {radial, envelope}, {g}, false, false, true);
    accumulate(grad_radial, grads[0]);
    accumulate(grad_envelope, grads[1]);
  }

  std::vector<torch::Tensor> roots, root_grads;
  const torch::Tensor *sums[3] = {&grad_radial, &grad_envelope, &grad_sh};
  for (int m = 0; m < 3; ++m)
    if (sums[m]->defined() && edge_out[m].requires_grad()) {
      roots.push_back(edge_out[m]);
      root_grads.push_back(*sums[m]);
    }
  torch::Tensor edge_grad;
  if (!roots.empty())
    edge_grad = torch::autograd::grad(roots, {vec}, root_grads, false, false, true)[0];
  if (!edge_grad.defined()) edge_grad = torch::zeros_like(vec);
  return {energy.detach(), atom_energy.detach(), edge_grad.detach()};
}

void exchange_without_nodes(const std::vector<int> &widths, RowType type,
                            FeatureExchange &exchange)
{
  for (int w : widths) exchange.forward(nullptr, 0, w, type);
  for (auto w = widths.rbegin(); w != widths.rend(); ++w) exchange.reverse(nullptr, 0, *w, type);
}

}    // namespace hienet
