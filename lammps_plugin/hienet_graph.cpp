/* ----------------------------------------------------------------------------------------
   Graph builders of pair_style hienet (see hienet_graph.h).
------------------------------------------------------------------------------------------ */

#include "hienet_graph.h"

#include "atom.h"
#include "error.h"
#include "neigh_list.h"
#include "neighbor.h"

#include <algorithm>
#include <climits>

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

HIENetGraph::HIENetGraph(LAMMPS *lmp) : Pointers(lmp) {}

/* ---------------------------------------------------------------------- */

void HIENetGraph::update(Mode mode, NeighList *list, const std::vector<int> &type_species,
                         double cutoff, int layers, const hienet_lammps::UnitFactors &units)
{
  length_unit = units.length;
  if (mode == Mode::Ghost) {
    build_ghost(list, type_species, cutoff, layers);
    hienet_lammps::edge_vectors_to_angstrom(edge_vec, units);
    topology = 0;
    built_at = -1;
  } else {
    // All of these change on every rank at the same step (a neighbour-list build is
    // collective), so the serial does too, as evaluate_exchange requires.
    if (built_at == neighbor->ncalls && built_mode == mode && built_types == type_species &&
        built_list == list)
      return;
    if (mode == Mode::Local) build_local(list, type_species);
    else build_exchange(list, type_species);
    built_at = neighbor->ncalls;
    built_mode = mode;
    built_types = type_species;
    built_list = list;
    ++topology;
  }
  n_local = 0;
  for (int a : node_atom)
    if (a < atom->nlocal) n_local++;
}

/* ---------------------------------------------------------------------- */

hienet::Graph HIENetGraph::graph() const
{
  hienet::Graph g;
  g.num_nodes = static_cast<int64_t>(node_atom.size());
  g.n_local = n_local;
  g.species = species.data();
  g.topology = topology;
  if (topology == 0) {    // ghost mode: edges from the host
    g.num_edges = static_cast<int64_t>(edge_src.size());
    g.edge_src = edge_src.data();
    g.edge_dst = edge_dst.data();
    g.edge_vec = edge_vec.data();
    return g;
  }
  // this step's positions: atom->x of every local and ghost atom (LAMMPS keeps it contiguous)
  hienet::Pairs &p = pairs;
  p.num_points = static_cast<int64_t>(atom->nlocal) + atom->nghost;
  p.positions = (p.num_points > 0) ? &atom->x[0][0] : nullptr;
  p.length_unit = length_unit;
  p.num_pairs = static_cast<int64_t>(point_i.size());
  p.point_i = point_i.data();
  p.point_j = point_j.data();
  p.node_i = node_i.data();
  p.node_j = node_j.data();
  g.pairs = &pairs;
  return g;
}

/* ---------------------------------------------------------------------- */

double HIENetGraph::memory_usage() const
{
  double bytes = sizeof(int64_t) * (species.capacity() + edge_src.capacity() + edge_dst.capacity() +
                                    point_i.capacity() + point_j.capacity() + node_i.capacity() +
                                    node_j.capacity());
  bytes += sizeof(double) * edge_vec.capacity();
  bytes += sizeof(int) *
      (node_atom.capacity() + atom_node.capacity() + atom_owner.capacity() + hops.capacity());
  return bytes;
}

/* ---------------------------------------------------------------------- */

void HIENetGraph::clear_edges()
{
  edge_src.clear();
  edge_dst.clear();
  edge_vec.clear();
  point_i.clear();
  point_j.clear();
  node_i.clear();
  node_j.clear();
}

void HIENetGraph::add_pair(int i, int j, int ni, int nj)
{
  point_i.push_back(i);
  point_j.push_back(j);
  node_i.push_back(ni);
  node_j.push_back(nj);
}

void HIENetGraph::add_node(int a, int s)
{
  atom_node[a] = static_cast<int>(node_atom.size());
  node_atom.push_back(a);
  species.push_back(s);
}

void HIENetGraph::add_edge(int ni, int nj, double dx, double dy, double dz)
{
  edge_src.push_back(ni);
  edge_dst.push_back(nj);
  edge_vec.push_back(dx);
  edge_vec.push_back(dy);
  edge_vec.push_back(dz);
}

/* ----------------------------------------------------------------------
   local mode: atom_owner[a] = index of the local atom that ghost a images.
   Rebuilt when any cached owner no longer carries the ghost's atom ID (a cheap check
   every step, so no assumption about when LAMMPS reorders its atoms).
------------------------------------------------------------------------- */

void HIENetGraph::map_ghosts_to_owners()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const tagint *tag = atom->tag;

  bool valid = static_cast<int>(atom_owner.size()) == nall;
  for (int a = nlocal; valid && a < nall; a++) {
    const int o = atom_owner[a];
    valid = o >= 0 && o < nlocal && tag[o] == tag[a];
  }
  if (valid) {
    for (int i = 0; valid && i < nlocal; i++) valid = atom_owner[i] == i;
    if (valid) return;
  }

  tag_to_local.clear();
  tag_to_local.reserve(nlocal);
  for (int i = 0; i < nlocal; i++)
    if (!tag_to_local.emplace(tag[i], i).second)
      error->one(FLERR, "pair_style hienet: duplicate atom ID {}", tag[i]);
  atom_owner.resize(nall);
  for (int i = 0; i < nlocal; i++) atom_owner[i] = i;
  for (int a = nlocal; a < nall; a++) {
    auto it = tag_to_local.find(tag[a]);
    if (it == tag_to_local.end())
      error->one(FLERR, "pair_style hienet: ghost atom ID {} has no local owner (graph local "
                 "needs all atoms on one rank)", tag[a]);
    atom_owner[a] = it->second;
  }
}

/* ----------------------------------------------------------------------
   local mode graph: nodes = local atoms, pair (i, j) of node i and node owner(j), whose
   edge vector is x_j - x_i
------------------------------------------------------------------------- */

void HIENetGraph::build_local(NeighList *list, const std::vector<int> &type_species)
{
  map_ghosts_to_owners();
  const int *type = atom->type;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;

  atom_node.assign(atom->nlocal, -1);
  node_atom.clear();
  species.clear();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int s = type_species[type[i]];
    if (s >= 0) add_node(i, s);
  }

  clear_edges();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int ni = atom_node[i];
    if (ni < 0) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (type_species[type[j]] < 0) continue;
      const int nj = atom_node[atom_owner[j]];
      if (nj < 0) error->one(FLERR, "pair_style hienet: neighbour {} of atom {} is not a node",
                             atom->tag[j], atom->tag[i]);
      add_pair(i, j, ni, nj);
    }
  }
}

/* ----------------------------------------------------------------------
   ghost mode graph: nodes = local atoms and the ghosts within `layers` graph hops
   (|r| < cutoff per hop). Every edge touching a node at hop <= layers-1 is kept, in both
   directions; edges between two nodes at hop == layers cannot reach a local atom's energy
   within `layers` message passes and are dropped.
------------------------------------------------------------------------- */

void HIENetGraph::build_ghost(NeighList *list, const std::vector<int> &type_species, double rc,
                              int layers)
{
  const double *const *x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double rcsq = rc * rc;
  const int unreached = INT_MAX;
  layers = std::max(1, layers);

  hops.assign(nall, unreached);
  atom_node.assign(nall, -1);
  node_atom.clear();
  species.clear();

  auto is_edge = [&](int i, int j) {
    const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < rcsq;
  };

  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (i < nlocal && type_species[type[i]] >= 0) {
      hops[i] = 0;
      add_node(i, type_species[type[i]]);
    }
  }
  // breadth-first search out to `layers` hops; nodes are numbered in the order found
  size_t level_begin = 0;
  for (int hop = 1; hop <= layers; hop++) {
    const size_t level_end = node_atom.size();
    for (size_t n = level_begin; n < level_end; n++) {
      const int i = node_atom[n];
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        if (hops[j] != unreached || type_species[type[j]] < 0 || !is_edge(i, j)) continue;
        hops[j] = hop;
        add_node(j, type_species[type[j]]);
      }
    }
    level_begin = level_end;
  }

  clear_edges();
  const int nnodes = static_cast<int>(node_atom.size());
  for (int ni = 0; ni < nnodes; ni++) {
    const int i = node_atom[ni];
    if (hops[i] >= layers) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (type_species[type[j]] < 0) continue;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= rcsq) continue;
      const int nj = atom_node[j];
      if (nj < 0) error->one(FLERR, "pair_style hienet: neighbour {} of atom {} is not a node",
                             atom->tag[j], atom->tag[i]);
      add_edge(ni, nj, dx, dy, dz);
      // j's own list adds (j, i) unless j is on the outermost shell
      if (hops[j] == layers) add_edge(nj, ni, -dx, -dy, -dz);
    }
  }
}

/* ----------------------------------------------------------------------
   exchange mode graph: nodes = local atoms, then all ghost atoms (in LAMMPS index order,
   so that the exchange can address any atom a forward or reverse swap touches); pairs
   (i, j) for local i only, from its full neighbour list.
------------------------------------------------------------------------- */

void HIENetGraph::build_exchange(NeighList *list, const std::vector<int> &type_species)
{
  const int *type = atom->type;
  const int nall = atom->nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;

  atom_node.assign(nall, -1);
  node_atom.clear();
  species.clear();
  for (int a = 0; a < nall; a++)
    if (type_species[type[a]] >= 0) add_node(a, type_species[type[a]]);

  clear_edges();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int ni = atom_node[i];
    if (ni < 0) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const int nj = atom_node[j];
      if (nj < 0) continue;    // NULL type
      add_pair(i, j, ni, nj);
    }
  }
}
