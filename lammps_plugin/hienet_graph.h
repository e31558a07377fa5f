/* -*- c++ -*- ----------------------------------------------------------------------------
   The graphs pair_style hienet hands to the HIENet runtime, built from LAMMPS's atoms and a
   full neighbour list (one per graph mode; see pair_hienet.h for when each is used).

     local     one MPI rank: nodes are the local atoms; every ghost neighbour is folded onto
               the local atom it images (through atom IDs).
     ghost     nodes are the local atoms plus the ghosts within `layers` graph hops (needs
               a ghost cutoff of layers x cutoff + skin and a neighbour list of ghosts too).
     exchange  nodes are the local atoms, then every ghost atom LAMMPS provides (ghost
               cutoff = cutoff + skin); edges are centred on local atoms only. Node features
               of ghosts come from their owners through HIENetExchange.

   In every mode nodes 0 .. n_local-1 are local atoms, atoms of NULL type (pair_style
   hybrid) are not nodes, and edge (i, j) carries x_j - x_i for |x_j - x_i| < cutoff.

   local and exchange hand the runtime the lean step's graph (hienet::Pairs): every pair of
   the neighbour list (cutoff + skin) between two nodes, rebuilt only when LAMMPS rebuilt its
   neighbour lists during a run (neighbor->ncalls changed: atoms are renumbered and ghosts
   remade only then) and after each setup (invalidate(), from init_style(): ncalls restarts
   with every run), under a new topology serial; every step the
   runtime reads the positions (atom->x) and makes the edges of the pairs closer than the
   cutoff itself, so nodes and pairs stay on the GPU between rebuilds. ghost builds nodes and
   edges on the host every step (its ghost nodes depend on the distances), topology serial 0.

   Includes LAMMPS headers, so never torch headers (see pair_hienet.cpp).
------------------------------------------------------------------------------------------ */

#ifndef LMP_HIENET_GRAPH_H
#define LMP_HIENET_GRAPH_H

#include "pointers.h"

#include "hienet/model.h"
#include "hienet_units.h"

#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

class HIENetGraph : protected Pointers {
 public:
  enum class Mode { Local, Ghost, Exchange };

  explicit HIENetGraph(class LAMMPS *);

  // Brings the graph up to date for this step (see above). type_species[t]: model species of
  // atom type t, -1 for NULL; cutoff in LAMMPS length; layers: ghost mode's hops.
  void update(Mode mode, class NeighList *list, const std::vector<int> &type_species,
              double cutoff, int layers, const hienet_lammps::UnitFactors &units);

  // The next update() rebuilds nodes and pairs (called at every setup, on every rank).
  void invalidate() { built_at = -1; }

  hienet::Graph graph() const;    // a view of the buffers and of this step's positions
  int num_nodes() const { return static_cast<int>(node_atom.size()); }
  int num_local() const { return n_local; }
  const std::vector<int> &nodes() const { return node_atom; }    // node -> LAMMPS atom
  const std::vector<int> &atom_nodes() const { return atom_node; }    // atom -> node or -1
  double memory_usage() const;

 private:
  std::vector<int64_t> species, edge_src, edge_dst;    // ghost mode's edges
  std::vector<double> edge_vec;
  // local and exchange: the candidate pairs (positions are LAMMPS atom indices)
  std::vector<int64_t> point_i, point_j, node_i, node_j;
  mutable hienet::Pairs pairs;    // graph() points it at this step's positions
  double length_unit = 1.0;
  uint64_t topology = 0;          // serial of nodes and pairs, 0 in ghost mode
  bigint built_at = -1;           // neighbor->ncalls when the pairs were built
  Mode built_mode = Mode::Local;
  std::vector<int> built_types;
  NeighList *built_list = nullptr;
  std::vector<int> node_atom;
  std::vector<int> atom_node;
  int n_local = 0;
  std::vector<int> atom_owner;    // local mode: atom index -> local atom it images
  std::vector<int> hops;          // ghost mode: graph distance from the local atoms
  std::unordered_map<tagint, int> tag_to_local;

  void clear_edges();
  void add_node(int atom, int s);
  void add_edge(int ni, int nj, double dx, double dy, double dz);
  void add_pair(int i, int j, int ni, int nj);
  void build_local(NeighList *, const std::vector<int> &);
  void build_ghost(NeighList *, const std::vector<int> &, double, int);
  void build_exchange(NeighList *, const std::vector<int> &);
  void map_ghosts_to_owners();
};

}    // namespace LAMMPS_NS

#endif
