/* -*- c++ -*- ----------------------------------------------------------------------------
   pair_style hienet: the HIENet machine-learning potential, evaluated by the HIENet C++
   runtime (cpp/) on an exported TorchScript model (export/FORMAT.md).

     pair_style hienet model.pt [device auto|cpu|cuda] [graph auto|local|ghost]
     pair_coeff * * El1 El2 ... ElN        (one element per atom type; NULL skips a type
                                            under pair_style hybrid)

   Graph modes:
     local  one MPI rank only: nodes are the local atoms; ghost neighbours are folded onto
            the local atoms they image (through their atom IDs), so the cost does not grow
            with the receptive field.
     ghost  nodes are local atoms plus the ghost atoms within num_message_passing_layers
            graph hops; the ghost cutoff is raised to layers x cutoff + skin; energy counts
            local atoms only; forces on ghosts go back to their owners by reverse
            communication (needs newton pair on).
     auto   local on one rank, ghost on several (the default).

   Per-atom virial: each directed edge's -r (x) g is split half to its centre atom and half
   to its neighbour (vatom: xx yy zz xy xz yz; cvatom adds yx zx zy).
------------------------------------------------------------------------------------------ */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(hienet,PairHIENet);
// clang-format on
#else

#ifndef LMP_PAIR_HIENET_H
#define LMP_PAIR_HIENET_H

#include "pair.h"

#include "hienet/model.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

class PairHIENet : public Pair {
 public:
  PairHIENet(class LAMMPS *);
  ~PairHIENet() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  double memory_usage() override;

 protected:
  enum class GraphMode { Auto, Local, Ghost };

  std::unique_ptr<hienet::Model> model;
  std::string model_path;
  hienet::Device device_choice;
  GraphMode graph_request;
  bool ghost_mode;                  // resolved in init_style()

  std::vector<int> type_species;    // [ntypes+1]: model species index, -1 for NULL
  std::vector<std::string> type_element;

  // graph buffers, grown as needed and reused between steps
  std::vector<int64_t> species, edge_src, edge_dst;
  std::vector<double> edge_vec;
  std::vector<int> node_atom;       // node -> LAMMPS atom index
  std::vector<int> atom_node;       // LAMMPS atom index -> node, -1 if not a node
  std::vector<int> atom_owner;      // local mode: atom index -> local atom it images
  std::vector<int> hops;            // ghost mode: graph distance from the local atoms
  std::unordered_map<tagint, int> tag_to_local;
  bigint owner_build = -1;          // neighbor->ncalls when atom_owner was built
  hienet::Result result;

  void allocate();
  void load_model();
  void build_local_graph();
  void build_ghost_graph();
  void map_ghosts_to_owners();
  std::string nonfinite_position();
  std::string node_error_message(const hienet::NodeError &);
  void stop_if_failed_anywhere(const std::string &failure);
};

}    // namespace LAMMPS_NS

#endif
#endif
