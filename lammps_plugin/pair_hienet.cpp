/* ----------------------------------------------------------------------------------------
   pair_style hienet: a thin adapter between LAMMPS arrays and the HIENet C++ runtime.
   See pair_hienet.h for the syntax and the two graph modes.

   This file includes LAMMPS headers and therefore must never include torch headers
   (LAMMPS bundles fmt 10, torch fmt 12, with the same include guards); the runtime is
   reached through hienet/model.h only.
------------------------------------------------------------------------------------------ */

#include "pair_hienet.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include "hienet/keys.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <exception>

#ifndef HIENET_VERSION
#define HIENET_VERSION "unknown"
#endif
#ifndef HIENET_GIT
#define HIENET_GIT "unknown"
#endif

using namespace LAMMPS_NS;

namespace {

std::string join(const std::vector<std::string> &items)
{
  std::string out;
  for (size_t k = 0; k < items.size(); ++k) out += (k ? " " : "") + items[k];
  return out;
}

// "2.13.0+cpu" -> "2.13"
std::string major_minor(const std::string &version)
{
  auto first = version.find('.');
  if (first == std::string::npos) return version;
  auto second = version.find_first_of(".+", first + 1);
  return version.substr(0, second);
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairHIENet::PairHIENet(LAMMPS *lmp) :
    Pair(lmp), device_choice(hienet::Device::Auto), graph_request(GraphMode::Auto),
    ghost_mode(false)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // the virial comes from the edges; f dot r over ghosts would be wrong in local mode
  no_virial_fdotr_compute = 1;
  centroidstressflag = CENTROID_AVAIL;
  ghostneigh = 0;
  cutghost = nullptr;
}

/* ---------------------------------------------------------------------- */

PairHIENet::~PairHIENet()
{
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

/* ---------------------------------------------------------------------- */

void PairHIENet::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      setflag[i][j] = 0;
      cutsq[i][j] = cutghost[i][j] = 0.0;
    }
}

/* ----------------------------------------------------------------------
   pair_style hienet model.pt [device auto|cpu|cuda] [graph auto|local|ghost]
------------------------------------------------------------------------- */

void PairHIENet::settings(int narg, char **arg)
{
  if (narg < 1) utils::missing_cmd_args(FLERR, "pair_style hienet", error);
  model_path = arg[0];
  device_choice = hienet::Device::Auto;
  graph_request = GraphMode::Auto;

  for (int iarg = 1; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg) utils::missing_cmd_args(FLERR, "pair_style hienet " + key, error);
    const std::string value = arg[iarg + 1];
    if (key == "device") {
      if (value == "auto") device_choice = hienet::Device::Auto;
      else if (value == "cpu") device_choice = hienet::Device::CPU;
      else if (value == "cuda") device_choice = hienet::Device::CUDA;
      else error->all(FLERR, "Unknown pair_style hienet device '{}': use auto, cpu or cuda", value);
    } else if (key == "graph") {
      if (value == "auto") graph_request = GraphMode::Auto;
      else if (value == "local") graph_request = GraphMode::Local;
      else if (value == "ghost") graph_request = GraphMode::Ghost;
      else error->all(FLERR, "Unknown pair_style hienet graph '{}': use auto, local or ghost", value);
    } else {
      error->all(FLERR, "Unknown pair_style hienet keyword '{}' (known: device, graph)", key);
    }
  }

  load_model();

  // a new model may have other species: pair_coeff must be given (again)
  if (allocated) {
    const int n = atom->ntypes;
    for (int i = 0; i <= n; i++)
      for (int j = 0; j <= n; j++) setflag[i][j] = 0;
  }
  type_species.clear();
  type_element.clear();
}

/* ---------------------------------------------------------------------- */

void PairHIENet::load_model()
{
  // node-local rank, so that several ranks on a node share out its GPUs
  int local_rank = 0;
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);

  hienet::Options options;
  options.device = device_choice;
  options.local_rank = local_rank;
  options.num_threads = -1;    // HIENET_NUM_THREADS, default 1

  std::string message;
  model.reset();
  try {
    model = std::make_unique<hienet::Model>(model_path, options);
  } catch (const std::exception &e) {
    message = e.what();
  }
  int failed = message.empty() ? 0 : 1, nfailed = 0;
  MPI_Allreduce(&failed, &nfailed, 1, MPI_INT, MPI_SUM, world);
  if (nfailed == comm->nprocs) error->all(FLERR, "pair_style hienet: {}", message);
  if (failed) error->one(FLERR, "pair_style hienet: {}", message);
  if (nfailed) error->all(FLERR, "pair_style hienet: the model could not be loaded on all ranks");

  if (comm->me == 0) {
    const hienet::Metadata &m = model->metadata();
    const double receptive = m.num_message_passing_layers * m.cutoff;
    utils::logmesg(lmp,
                   "HIENet pair style {} (git {}), torch {}\n"
                   "  model {}: format {}, hienet {}, {}\n"
                   "  species ({}): {}\n"
                   "  cutoff {} A, {} message-passing layers, receptive field {} A, dtype {}\n"
                   "  device {}, {} torch thread(s) per rank (HIENET_NUM_THREADS)\n",
                   HIENET_VERSION, HIENET_GIT, hienet::torch_version(), model_path,
                   m.format_version, m.hienet_version.empty() ? "?" : m.hienet_version,
                   m.model_hash.empty() ? "no hash" : m.model_hash, m.species.size(),
                   join(m.species), m.cutoff, m.num_message_passing_layers, receptive, m.dtype,
                   model->device(), model->num_threads());
    if (!m.torch_version.empty() &&
        major_minor(m.torch_version) != major_minor(hienet::torch_version()))
      error->warning(FLERR,
                     "HIENet model {} was exported with torch {} but runs on torch {}; "
                     "re-export it with this torch if results look wrong",
                     model_path, m.torch_version, hienet::torch_version());
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * El1 ... ElN : one element per atom type (NULL: not handled here)
------------------------------------------------------------------------- */

void PairHIENet::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  if (!model) error->all(FLERR, "pair_coeff for hienet before a model was loaded by pair_style");
  const int ntypes = atom->ntypes;

  if (narg < 2 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style hienet requires 'pair_coeff * * El1 ... El{}' (one element "
               "per atom type)", ntypes);
  if (narg != 2 + ntypes) {
    std::vector<std::string> given(arg + 2, arg + narg);
    error->all(FLERR, "pair_coeff * * for pair_style hienet needs one element per atom type: "
               "{} atom types but {} elements given ({})", ntypes, narg - 2, join(given));
  }

  type_species.assign(ntypes + 1, -1);
  type_element.assign(ntypes + 1, "");
  int mapped = 0;
  for (int t = 1; t <= ntypes; t++) {
    const std::string element = arg[t + 1];
    type_element[t] = element;
    if (element == "NULL") continue;
    const int s = model->species_index(element);
    if (s < 0)
      error->all(FLERR, "Element '{}' (atom type {}) is not in HIENet model {}; the model's "
                 "species are: {}", element, t, model_path, join(model->species()));
    type_species[t] = s;
    mapped++;
  }
  if (mapped == 0) error->all(FLERR, "pair_coeff * * for pair_style hienet maps no atom type");

  for (int i = 1; i <= ntypes; i++)
    for (int j = 1; j <= ntypes; j++)
      setflag[i][j] = (type_species[i] >= 0 && type_species[j] >= 0) ? 1 : 0;

  if (comm->me == 0) {
    std::string table = "HIENet atom type -> model species:\n";
    for (int t = 1; t <= ntypes; t++) {
      if (type_species[t] < 0)
        table += fmt::format("  type {} -> NULL (not handled by hienet)\n", t);
      else
        table += fmt::format("  type {} -> {} (model species {})\n", t, type_element[t],
                             type_species[t]);
    }
    utils::logmesg(lmp, table);
  }
}

/* ---------------------------------------------------------------------- */

void PairHIENet::init_style()
{
  if (!model) error->all(FLERR, "Pair style hienet has no model: check pair_style");
  if (!atom->tag_enable) error->all(FLERR, "Pair style hienet requires atom IDs");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "Pair style hienet requires 'units metal' (HIENet models use eV and "
               "Angstrom); this input uses 'units {}'", update->unit_style);

  if (graph_request == GraphMode::Local && comm->nprocs > 1)
    error->all(FLERR, "pair_style hienet graph local works on one MPI rank only ({} ranks "
               "here); use graph auto or ghost", comm->nprocs);
  ghost_mode = graph_request == GraphMode::Ghost ||
      (graph_request == GraphMode::Auto && comm->nprocs > 1);
  if (ghost_mode && force->newton_pair == 0)
    error->all(FLERR, "Pair style hienet on several MPI ranks (graph ghost) requires "
               "'newton pair on': forces on ghost atoms are sent back to their owners");

  ghostneigh = ghost_mode ? 1 : 0;
  neighbor->add_request(this, NeighConst::REQ_FULL | (ghost_mode ? NeighConst::REQ_GHOST : 0));

  if (ghost_mode) {
    if (comm->mode != Comm::SINGLE)
      error->all(FLERR, "Pair style hienet with several MPI ranks (graph ghost) needs "
                 "'comm_modify mode single' (it sets the ghost cutoff itself)");
    // ghost atoms out to layers x cutoff, so users need no comm_modify
    const int layers = std::max(1, model->num_message_passing_layers());
    const double cut = layers * model->cutoff() + neighbor->skin;
    if (comm->cutghostuser < cut) comm->cutghostuser = cut;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style hienet: graph of local + ghost atoms, ghost cutoff {} A "
                     "({} layers x {} A + skin {} A)\n", comm->cutghostuser, layers,
                     model->cutoff(), neighbor->skin);
  } else if (comm->me == 0) {
    utils::logmesg(lmp, "pair_style hienet: graph of local atoms, ghost neighbours folded "
                   "onto their owners\n");
  }
}

/* ---------------------------------------------------------------------- */

double PairHIENet::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  const double rc = model->cutoff();
  cutghost[i][j] = cutghost[j][i] = rc;
  return rc;
}

/* ----------------------------------------------------------------------
   local mode: atom_owner[a] = index of the local atom that ghost a images.
   Rebuilt when any cached owner no longer carries the ghost's atom ID (a cheap check
   every step, so no assumption about when LAMMPS reorders its atoms).
------------------------------------------------------------------------- */

void PairHIENet::map_ghosts_to_owners()
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
   local mode graph: nodes = local atoms, edge (i, owner(j)) with x_j - x_i
------------------------------------------------------------------------- */

void PairHIENet::build_local_graph()
{
  map_ghosts_to_owners();
  const double *const *x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double rc = model->cutoff();
  const double rcsq = rc * rc;

  atom_node.assign(nlocal, -1);
  node_atom.clear();
  species.clear();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int s = type_species[type[i]];
    if (s < 0) continue;
    atom_node[i] = static_cast<int>(node_atom.size());
    node_atom.push_back(i);
    species.push_back(s);
  }

  edge_src.clear();
  edge_dst.clear();
  edge_vec.clear();
  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    const int ni = atom_node[i];
    if (ni < 0) continue;
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (type_species[type[j]] < 0) continue;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= rcsq) continue;
      const int nj = atom_node[atom_owner[j]];
      if (nj < 0) error->one(FLERR, "pair_style hienet: neighbour {} of atom {} is not a node",
                             atom->tag[j], atom->tag[i]);
      edge_src.push_back(ni);
      edge_dst.push_back(nj);
      edge_vec.push_back(dx);
      edge_vec.push_back(dy);
      edge_vec.push_back(dz);
    }
  }
}

/* ----------------------------------------------------------------------
   ghost mode graph: nodes = local atoms and the ghosts within `layers` graph hops
   (|r| < cutoff per hop). Every edge touching a node at hop <= layers-1 is kept, in both
   directions; edges between two nodes at hop == layers cannot reach a local atom's energy
   within `layers` message passes and are dropped.
------------------------------------------------------------------------- */

void PairHIENet::build_ghost_graph()
{
  const double *const *x = atom->x;
  const int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double rc = model->cutoff();
  const double rcsq = rc * rc;
  const int layers = std::max(1, model->num_message_passing_layers());
  const int unreached = INT_MAX;

  hops.assign(nall, unreached);
  atom_node.assign(nall, -1);
  node_atom.clear();
  species.clear();

  auto add_node = [&](int a, int hop) {
    hops[a] = hop;
    atom_node[a] = static_cast<int>(node_atom.size());
    node_atom.push_back(a);
    species.push_back(type_species[type[a]]);
  };
  auto is_edge = [&](int i, int j) {
    const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < rcsq;
  };

  for (int ii = 0; ii < inum; ii++) {
    const int i = ilist[ii];
    if (i < nlocal && type_species[type[i]] >= 0) add_node(i, 0);
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
        add_node(j, hop);
      }
    }
    level_begin = level_end;
  }

  edge_src.clear();
  edge_dst.clear();
  edge_vec.clear();
  auto add_edge = [&](int ni, int nj, double dx, double dy, double dz) {
    edge_src.push_back(ni);
    edge_dst.push_back(nj);
    edge_vec.push_back(dx);
    edge_vec.push_back(dy);
    edge_vec.push_back(dz);
  };
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

/* ---------------------------------------------------------------------- */

void PairHIENet::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  stop_if_failed_anywhere(nonfinite_position());

  if (ghost_mode) build_ghost_graph();
  else build_local_graph();

  int n_local = 0;
  for (int a : node_atom)
    if (a < atom->nlocal) n_local++;

  hienet::Graph graph;
  graph.num_nodes = static_cast<int64_t>(node_atom.size());
  graph.n_local = n_local;
  graph.species = species.data();
  graph.num_edges = static_cast<int64_t>(edge_src.size());
  graph.edge_src = edge_src.data();
  graph.edge_dst = edge_dst.data();
  graph.edge_vec = edge_vec.data();

  const hienet::AtomVirial atom_virial = cvflag_atom ? hienet::AtomVirial::Nine
      : vflag_atom                                   ? hienet::AtomVirial::Six
                                                     : hienet::AtomVirial::None;
  std::string failure;
  try {
    model->evaluate(graph, atom_virial, result);
  } catch (const hienet::NodeError &e) {
    failure = node_error_message(e);
  } catch (const std::exception &e) {
    failure = e.what();
  }
  stop_if_failed_anywhere(failure);

  // accumulate (+=) everywhere, so that pair_style hybrid/overlay works
  double **f = atom->f;
  const int nnodes = static_cast<int>(node_atom.size());
  for (int n = 0; n < nnodes; n++) {
    double *fa = f[node_atom[n]];
    fa[0] += result.forces[3 * n];
    fa[1] += result.forces[3 * n + 1];
    fa[2] += result.forces[3 * n + 2];
  }
  if (eflag_global) eng_vdwl += result.energy;
  if (eflag_atom)
    for (int n = 0; n < n_local; n++) eatom[node_atom[n]] += result.atom_energy[n];
  if (vflag_global)
    for (int k = 0; k < 6; k++) virial[k] += result.virial[k];
  const int nv = static_cast<int>(atom_virial);
  if (vflag_atom)
    for (int n = 0; n < nnodes; n++)
      for (int k = 0; k < 6; k++) vatom[node_atom[n]][k] += result.atom_virial[nv * n + k];
  if (cvflag_atom)
    for (int n = 0; n < nnodes; n++)
      for (int k = 0; k < 9; k++) cvatom[node_atom[n]][k] += result.atom_virial[9 * n + k];
}

/* ----------------------------------------------------------------------
   bad input and model failures, reported with atom IDs. Every rank takes part in
   stop_if_failed_anywhere(), which turns a failure on any rank into one error->all with the
   lowest failing rank's message: error->one on several ranks at once races with MPI_Abort,
   and mpirun then sometimes loses the message.
------------------------------------------------------------------------- */

std::string PairHIENet::nonfinite_position()
{
  const double *const *x = atom->x;
  for (int i = 0; i < atom->nlocal; i++)    // ghosts are checked by their owners
    if (!std::isfinite(x[i][0]) || !std::isfinite(x[i][1]) || !std::isfinite(x[i][2]))
      return fmt::format("atom {} has a non-finite position ({}, {}, {})", atom->tag[i], x[i][0],
                         x[i][1], x[i][2]);
  return {};
}

std::string PairHIENet::node_error_message(const hienet::NodeError &e)
{
  auto id = [&](int64_t node) -> tagint {
    return (node >= 0 && node < static_cast<int64_t>(node_atom.size())) ? atom->tag[node_atom[node]]
                                                                        : -1;
  };
  switch (e.kind) {
    case hienet::NodeError::Kind::Coincident:
      return fmt::format("atoms {} and {} are {:.3g} A apart (< {} A): overlapping atoms, the "
                         "model is undefined there", id(e.node_i), id(e.node_j), e.distance,
                         hienet::keys::MIN_ATOM_DISTANCE);
    case hienet::NodeError::Kind::NonFiniteEdge:
      return fmt::format("the distance vector between atoms {} and {} is not finite",
                         id(e.node_i), id(e.node_j));
    case hienet::NodeError::Kind::NonFiniteOutput:
      return fmt::format("model {} returned a non-finite energy or force for atom {}", model_path,
                         id(e.node_i));
  }
  return e.what();
}

void PairHIENet::stop_if_failed_anywhere(const std::string &failure)
{
  if (comm->nprocs == 1) {
    if (!failure.empty()) error->all(FLERR, "pair_style hienet: {}", failure);
    return;
  }
  int mine = failure.empty() ? comm->nprocs : comm->me, first = comm->nprocs;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
  if (first == comm->nprocs) return;
  std::string message = failure;
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, first, world);
  message.resize(length);
  MPI_Bcast(&message[0], length, MPI_CHAR, first, world);
  error->all(FLERR, "pair_style hienet (rank {}): {}", first, message);
}

/* ---------------------------------------------------------------------- */

double PairHIENet::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += sizeof(int64_t) * (species.capacity() + edge_src.capacity() + edge_dst.capacity());
  bytes += sizeof(double) * (edge_vec.capacity() + result.forces.capacity() +
                             result.atom_energy.capacity() + result.atom_virial.capacity());
  bytes += sizeof(int) *
      (node_atom.capacity() + atom_node.capacity() + atom_owner.capacity() + hops.capacity());
  return bytes;
}
