// Layer-by-layer evaluation with a feature exchange between message-passing layers.
//
// Forward, on a graph whose edges are centred on owners (edge_index[0] < n_local):
//   (radial, envelope, sh) = edge_features(edge_vec)
//   x = embed(species)                              ghosts embed their own species
//   x = invariant_layer(x, flip(edge_index), ...)   it sums at edge_index[1]: flipped, every
//                                                   owner receives the messages of its edges
//                                                   (they depend on |r| only)
//   for k = 0 .. K-1:
//     x = exchange.forward(x)                       ghost rows := owner rows
//     x = interaction(k, x, edge_index, ...)        sums at edge_index[0], the owner
//   E = sum readout(x[:n_local])
// Only owner rows of a stage's output are right; the exchange overwrites the ghost rows.
//
// Backward, stage by stage with torch::autograd::grad: each stage ran on detached leaves
// (its node input, and radial/envelope/sh shared by all stages), so the gradient of the
// total energy with respect to a stage's input is that stage's backward of the gradient
// of its output. Before it becomes the output gradient of the previous stage, the rows of
// ghost nodes are added into their owners (exchange.reverse) and zeroed: the previous
// stage's ghost rows were overwritten and have no gradient of their own. The gradients of
// radial/envelope/sh are summed over stages and go through edge_features once, to edge_vec.
#include "staged.h"

#include "hienet/model.h"

#include <torch/autograd.h>

namespace hienet {

const char *const kStageMethods[5] = {"embed", "edge_features", "invariant_layer", "interaction",
                                      "readout"};

namespace {

RowType row_type(const torch::Tensor &t)
{
  return t.scalar_type() == torch::kFloat32 ? RowType::Float32 : RowType::Float64;
}

// A host copy that the exchange may modify (never a view of a tensor autograd saved).
torch::Tensor host_copy(const torch::Tensor &t)
{
  if (t.device().is_cpu()) return t.detach().clone(torch::MemoryFormat::Contiguous);
  return t.detach().to(torch::kCPU).contiguous();
}

// x with ghost rows replaced by their owners' rows, as a new leaf that requires grad.
torch::Tensor exchanged_input(const torch::Tensor &x, FeatureExchange &exchange)
{
  torch::Tensor host = host_copy(x);
  exchange.forward(host.data_ptr(), host.size(0), static_cast<int>(host.size(1)), row_type(host));
  return host.to(x.device()).requires_grad_(true);
}

// Gradient of ghost rows added into their owners; ghost rows zeroed.
torch::Tensor gathered_gradient(const torch::Tensor &g, int64_t n_local,
                                FeatureExchange &exchange)
{
  torch::Tensor host = host_copy(g);
  exchange.reverse(host.data_ptr(), host.size(0), static_cast<int>(host.size(1)), row_type(host));
  host.narrow(0, n_local, host.size(0) - n_local).zero_();
  return host.to(g.device());
}

void accumulate(torch::Tensor &sum, const torch::Tensor &g)
{
  if (!g.defined()) return;
  sum = sum.defined() ? sum + g : g;
}

}    // namespace

StagedOutput evaluate_staged(torch::jit::Module &module, const std::string &path,
                             const std::vector<int> &widths, const torch::Tensor &species,
                             const torch::Tensor &edge_index, const torch::Tensor &edge_vec,
                             int64_t n_local, FeatureExchange &exchange)
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
  std::vector<torch::Tensor> inputs, outputs;    // inputs[k]: exchanged input of interaction k
  outputs.push_back(module.get_method("invariant_layer")({x0, edge_index.flip(0), radial,
                                                          envelope}).toTensor());
  for (int64_t k = 0; k < K; ++k) {
    const torch::Tensor &x = outputs.back();
    if (x.dim() != 2 || x.size(0) != N || x.size(1) != widths[k])
      throw stage_error("the features entering interaction " + std::to_string(k) + " have shape " +
                        c10::str(x.sizes()) + ", metadata exchange_widths says [" +
                        std::to_string(N) + ", " + std::to_string(widths[k]) + "]");
    inputs.push_back(exchanged_input(x, exchange));
    outputs.push_back(
        module.get_method("interaction")({k, inputs.back(), edge_index, radial, sh}).toTensor());
  }
  torch::Tensor atom_energy = module.get_method("readout")({outputs.back().narrow(0, 0, n_local),
                                                            species.narrow(0, 0, n_local)})
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
    g = gathered_gradient(g, n_local, exchange);
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
