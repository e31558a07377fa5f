/* -*- c++ -*- ----------------------------------------------------------------------------
   The inter-rank exchange of node features for pair_style hienet's graph exchange mode:
   hienet::FeatureExchange implemented with LAMMPS's own forward and reverse communication
   of a pair style, so that LAMMPS's swap pattern handles periodic self-images, several
   swaps per dimension and corner routing.

     forward(rows):  comm->forward_comm(pair): every ghost atom's row := its owner's row
     reverse(rows):  comm->reverse_comm(pair): every owner's row += its ghosts' rows
     owners_with_images: the local atoms the forward communication packs (a probe), whose
                     rows are all the runtime copies off the GPU

   The pair style's pack/unpack_{forward,reverse}_comm overrides delegate to the pack and
   unpack methods here. Rows are addressed through the graph's atom -> node map; atoms that
   are not nodes (NULL types) send zeros and receive nothing. float32 models exchange float32
   data: two values per double slot of LAMMPS's buffers.

   The pair style must set comm_forward = comm_reverse = max_slots(widths, type) before
   Comm::init() sizes the buffers (pair_style settings / init_style).

   Includes LAMMPS headers, so never torch headers (see pair_hienet.cpp).
------------------------------------------------------------------------------------------ */

#ifndef LMP_HIENET_EXCHANGE_H
#define LMP_HIENET_EXCHANGE_H

#include "lmptype.h"

#include "hienet/exchange.h"

#include <cstddef>
#include <vector>

namespace LAMMPS_NS {

class HIENetExchange : public hienet::FeatureExchange {
 public:
  HIENetExchange(class LAMMPS *, class Pair *);

  // doubles of LAMMPS's comm buffers per atom for one row of `width` values
  static int slots(int width, hienet::RowType type);
  static int max_slots(const std::vector<int> &widths, hienet::RowType type);

  // atom index -> node (or -1), for all local and ghost atoms; must outlive the exchanges
  void set_atom_nodes(const std::vector<int> *atom_node) { nodes = atom_node; }

  void forward(void *rows, int64_t num_nodes, int width, hienet::RowType type) override;
  void reverse(void *rows, int64_t num_nodes, int width, hienet::RowType type) override;
  // the local atoms LAMMPS's forward communication sends anywhere (a probe of one value
  // per atom through comm->forward_comm, so its swaps need not be known here)
  void owners_with_images(int64_t num_nodes, int64_t n_local,
                          std::vector<int64_t> &owners) override;

  int pack_forward(int n, const int *list, double *buf) const;
  void unpack_forward(int n, int first, const double *buf);
  int pack_reverse(int n, int first, double *buf) const;
  void unpack_reverse(int n, const int *list, const double *buf);

 private:
  class LAMMPS *lmp;    // not a Pointers: its destructor may throw, FeatureExchange's not
  class Pair *pair;
  const std::vector<int> *nodes = nullptr;
  char *rows = nullptr;
  int width = 0;
  hienet::RowType type = hienet::RowType::Float64;
  size_t row_bytes = 0;
  int row_slots = 0;
  std::vector<int64_t> *probed = nullptr;    // set during owners_with_images()
  int64_t probe_n_local = 0;

  void begin(void *rows, int width, hienet::RowType type);
  int node_of(int atom) const;
  void pack_row(int atom, double *slot) const;
};

}    // namespace LAMMPS_NS

#endif
