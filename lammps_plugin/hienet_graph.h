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

  // type_species[t]: model species of atom type t, -1 for NULL; layers: ghost mode's hops
  void build(Mode mode, class NeighList *list, const std::vector<int> &type_species,
             double cutoff, int layers);

  hienet::Graph graph() const;                                  // a view of the buffers
  int num_nodes() const { return static_cast<int>(node_atom.size()); }
  int num_local() const { return n_local; }
  bigint num_edges() const { return static_cast<bigint>(edge_src.size()); }
  const std::vector<int> &nodes() const { return node_atom; }    // node -> LAMMPS atom
  const std::vector<int> &atom_nodes() const { return atom_node; }    // atom -> node or -1
  double memory_usage() const;

  // edge vectors from LAMMPS length units to Å, the runtime's unit (after build)
  void edge_vectors_to_angstrom(const hienet_lammps::UnitFactors &units)
  {
    hienet_lammps::edge_vectors_to_angstrom(edge_vec, units);
  }

 private:
  std::vector<int64_t> species, edge_src, edge_dst;
  std::vector<double> edge_vec;
  std::vector<int> node_atom;
  std::vector<int> atom_node;
  int n_local = 0;
  std::vector<int> atom_owner;    // local mode: atom index -> local atom it images
  std::vector<int> hops;          // ghost mode: graph distance from the local atoms
  std::unordered_map<tagint, int> tag_to_local;

  void clear_edges();
  void add_node(int atom, int s);
  void add_edge(int ni, int nj, double dx, double dy, double dz);
  void build_local(NeighList *, const std::vector<int> &, double);
  void build_ghost(NeighList *, const std::vector<int> &, double, int);
  void build_exchange(NeighList *, const std::vector<int> &, double);
  void map_ghosts_to_owners();
};

}    // namespace LAMMPS_NS

#endif
