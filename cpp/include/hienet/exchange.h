// The seam between the staged evaluation of a model (Model::evaluate_exchange) and whatever
// owns the ghost atoms (LAMMPS's communication in pair_style hienet, a plain owner map in
// tests). Torch-free, so that LAMMPS translation units may include it.
//
// A ghost node is an image of an atom owned by some node (on this process or another): a
// periodic image, or an atom of another MPI rank. Between message-passing layers the
// runtime hands the per-node features to forward(), which must overwrite every ghost row
// with its owner's row; in the backward pass it hands the gradients to reverse(), which
// must add every ghost row into its owner's row (ghost rows may be left as they are: the
// runtime zeroes them afterwards).
//
// rows: num_nodes x width values, row-major, in host memory, of the model's dtype. Nodes
// 0 .. n_local-1 are the owners of this process (Graph convention of model.h). Only the
// rows the exchange uses travel between the model's device and the host: the rows of the
// owners named by owners_with_images() and the ghost rows. The other owner rows hold NaN
// (an exchange that reads them spreads NaN, which the runtime reports). Every call happens
// on the calling thread, in the same order on every process (also on processes with no
// nodes, where rows is null), so implementations may use MPI collectives.
#ifndef HIENET_EXCHANGE_H
#define HIENET_EXCHANGE_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hienet {

enum class RowType { Float32, Float64 };

class FeatureExchange {
 public:
  virtual ~FeatureExchange() = default;

  // ghost rows := owner rows
  virtual void forward(void *rows, int64_t num_nodes, int width, RowType type) = 0;
  // owner rows += ghost rows (every image of an owner, wherever it lives)
  virtual void reverse(void *rows, int64_t num_nodes, int width, RowType type) = 0;

  // The owners (nodes < n_local) whose rows forward() reads and reverse() adds into: those
  // with images. Asked after each change of the graph's topology (Graph::topology) before
  // its first exchange, on every process at the same call (it may communicate). The default,
  // every owner, is always right; naming fewer keeps the rest of the rows on the device.
  virtual void owners_with_images(int64_t num_nodes, int64_t n_local,
                                  std::vector<int64_t> &owners)
  {
    owners.resize(static_cast<std::size_t>(n_local));
    for (int64_t n = 0; n < n_local; ++n) owners[static_cast<std::size_t>(n)] = n;
  }
};

}    // namespace hienet

#endif
