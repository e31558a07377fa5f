/* ----------------------------------------------------------------------------------------
   pair_style hienet: a thin adapter between LAMMPS arrays and the HIENet C++ runtime.
   See pair_hienet.h for the syntax and the graph modes; the graphs are built in
   hienet_graph.cpp, the inter-rank feature exchange lives in hienet_exchange.cpp.

   This file includes LAMMPS headers and therefore must never include torch headers
   (LAMMPS bundles fmt 10, torch fmt 12, with the same include guards); the runtime is
   reached through hienet/model.h and hienet/allocator.h only.
------------------------------------------------------------------------------------------ */

#include "pair_hienet.h"
#include "hienet_lammps_compat.h"
#include "hienet_build_info.h"

#include "hienet/allocator.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "platform.h"
#include "update.h"
#include "utils.h"

#include "hienet/keys.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

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
    Pair(lmp), device_choice(hienet::Device::Auto), graph_request(GraphRequest::Auto),
    mode(HIENetGraph::Mode::Local), log_sizes(false), graph(lmp), exchange(lmp, this),
    deviation(lmp)
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
   pair_style hienet model.pt [more.pt ... deviation every N ...]
                     [device auto|cpu|cuda] [graph auto|local|exchange|ghost]
------------------------------------------------------------------------- */

void PairHIENet::settings(int narg, char **arg)
{
  if (narg < 1) utils::missing_cmd_args(FLERR, "pair_style hienet", error);
  model_path = arg[0];
  device_choice = hienet::Device::Auto;
  graph_request = GraphRequest::Auto;

  // with `deviation`, the model files up to the first keyword form an ensemble (the first
  // drives the dynamics)
  deviation.clear();
  auto keyword = [](const std::string &a) {
    return a == "device" || a == "graph" || a == "deviation";
  };
  const bool ensemble = std::any_of(arg + 1, arg + narg,
                                    [](const char *a) { return strcmp(a, "deviation") == 0; });
  int iarg = 1;
  for (; ensemble && iarg < narg && !keyword(arg[iarg]); iarg++)
    deviation.add_model_path(arg[iarg]);
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (key == "deviation") {
      iarg = deviation.parse(narg, arg, iarg);
      continue;
    }
    if (key != "device" && key != "graph")
      error->all(FLERR, "Unknown pair_style hienet keyword '{}' (known: device, graph, "
                 "deviation){}", key, platform::file_is_readable(key)
                     ? "; several model files (an ensemble) need 'deviation every N file FILE'"
                     : "");
    if (iarg + 1 >= narg) utils::missing_cmd_args(FLERR, "pair_style hienet " + key, error);
    const std::string value = arg[iarg + 1];
    if (key == "device") {
      if (value == "auto") device_choice = hienet::Device::Auto;
      else if (value == "cpu") device_choice = hienet::Device::CPU;
      else if (value == "cuda") device_choice = hienet::Device::CUDA;
      else error->all(FLERR, "Unknown pair_style hienet device '{}': use auto, cpu or cuda", value);
    } else {    // graph
      if (value == "auto") graph_request = GraphRequest::Auto;
      else if (value == "local") graph_request = GraphRequest::Local;
      else if (value == "exchange") graph_request = GraphRequest::Exchange;
      else if (value == "ghost") graph_request = GraphRequest::Ghost;
      else error->all(FLERR, "Unknown pair_style hienet graph '{}': use auto, local, exchange "
                      "or ghost", value);
    }
    iarg += 2;
  }
  deviation.check_settings(model_path);

  load_model();
  set_comm_sizes();    // here too: pair_style hybrid reads them from its sub-styles now

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
  const int local_rank = hienet_lammps::node_local_rank(world, comm->me);

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
                   "  built for {}\n"
                   "  model {}: format {}, hienet {}, {}\n"
                   "  species ({}): {}\n"
                   "  cutoff {} A, {} message-passing layers, receptive field {} A, dtype {}\n"
                   "  device {} ({} step, HIENET_STEP), {} torch thread(s) per rank "
                   "(HIENET_NUM_THREADS)\n"
                   "  memory: {}\n",
                   HIENET_VERSION, HIENET_GIT, hienet::torch_version(), HIENET_BUILD_INFO, model_path,
                   m.format_version, m.hienet_version.empty() ? "?" : m.hienet_version,
                   m.model_hash.empty() ? "no hash" : m.model_hash, m.species.size(),
                   join(m.species), m.cutoff, m.num_message_passing_layers, receptive, m.dtype,
                   model->device(),
                   model->step_mode() == hienet::StepMode::Device ? "device" : "host",
                   model->num_threads(), hienet::configure_allocator());
    if (!m.torch_version.empty() &&
        major_minor(m.torch_version) != major_minor(hienet::torch_version()))
      error->warning(FLERR,
                     "HIENet model {} was exported with torch {} but runs on torch {}; "
                     "re-export it with this torch if results look wrong",
                     model_path, m.torch_version, hienet::torch_version());
  }
  deviation.load(*model, model_path, options);
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
  // LAMMPS drops 1-2/1-3/1-4 pairs whose special_bonds lj and coul factors are both 0 (the
  // default) from the neighbour list unless a KSpace style keeps them; the model needs every
  // pair within the cutoff and ignores the factors (it masks the special bits)
  if (atom->molecular != Atom::ATOMIC && !force->kspace)
    for (int k = 1; k <= 3; k++)
      if (force->special_lj[k] == 0.0 && force->special_coul[k] == 0.0)
        error->all(FLERR, "Pair style hienet needs every pair within the cutoff, but special_bonds "
                   "factors lj = coul = 0 (the default) remove 1-{} pairs from the neighbor list: "
                   "use 'special_bonds lj/coul 1.0 1.0 1.0' (any non-zero factor keeps the pairs; "
                   "hienet does not scale them)", k + 1);
  std::string units_error;
  units = hienet_lammps::unit_factors(update->unit_style, force->angstrom, force->boltz,
                                      units_error);
  if (!units_error.empty()) error->all(FLERR, units_error);
  if (comm->me == 0 && !units.identity())
    utils::logmesg(lmp, "pair_style hienet: units {}: 1 Angstrom = {} length units, 1 eV = {} "
                   "energy units\n", update->unit_style, units.length, units.energy);
  // the default skins of si, cgs and micro (1 mm, 1 mm, 0.1 um) would make ghost shells of
  // astronomically many atoms: refuse instead of running out of memory
  const double cutoff_lammps = model->cutoff() * units.length;
  if (neighbor->skin > 10.0 * cutoff_lammps)
    error->all(FLERR, "Pair style hienet: neighbor skin {} is {:.3g} times the model cutoff "
               "({} A = {} in units {}); set a skin of about 2 A, e.g. 'neighbor {} bin'",
               neighbor->skin, neighbor->skin / cutoff_lammps, model->cutoff(), cutoff_lammps,
               update->unit_style, 2.0 * units.length);

  const int nprocs = comm->nprocs;
  switch (graph_request) {
    case GraphRequest::Local:
      if (nprocs > 1)
        error->all(FLERR, "pair_style hienet graph local works on one MPI rank only ({} ranks "
                   "here); use graph auto, exchange or ghost", nprocs);
      mode = HIENetGraph::Mode::Local;
      break;
    case GraphRequest::Exchange: mode = HIENetGraph::Mode::Exchange; break;
    case GraphRequest::Ghost: mode = HIENetGraph::Mode::Ghost; break;
    case GraphRequest::Auto:
      mode = nprocs == 1 ? HIENetGraph::Mode::Local : HIENetGraph::Mode::Exchange;
      break;
  }
  const bool ghosts_are_nodes = mode != HIENetGraph::Mode::Local;
  if (ghosts_are_nodes && force->newton_pair == 0)
    error->all(FLERR, "Pair style hienet with graph {} (the default on several MPI ranks) "
               "requires 'newton pair on': forces on ghost atoms are sent back to their owners",
               mode == HIENetGraph::Mode::Exchange ? "exchange" : "ghost");

  const bool ghost_list = mode == HIENetGraph::Mode::Ghost;
  ghostneigh = ghost_list ? 1 : 0;
  neighbor->add_request(this, NeighConst::REQ_FULL | (ghost_list ? NeighConst::REQ_GHOST : 0));
  set_comm_sizes();
  log_sizes = true;
  deviation.init(mode, *model, model_path);
  graph.invalidate();    // atoms may have changed since the last run

  const double skin = neighbor->skin;
  if (mode == HIENetGraph::Mode::Ghost) {
    if (comm->mode != Comm::SINGLE)
      error->all(FLERR, "Pair style hienet with graph ghost needs 'comm_modify mode single' "
                 "(it sets the ghost cutoff itself)");
    // ghost atoms out to layers x cutoff, so users need no comm_modify
    const int layers = std::max(1, model->num_message_passing_layers());
    const double cut = layers * cutoff_lammps + skin;
    if (comm->cutghostuser < cut) comm->cutghostuser = cut;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style hienet: graph ghost: local + ghost atoms within {} "
                     "graph hops, ghost cutoff {} ({} layers x {} A + skin {}, in units {})\n",
                     layers, comm->cutghostuser, layers, model->cutoff(), skin,
                     update->unit_style);
  } else if (mode == HIENetGraph::Mode::Exchange) {
    if (comm->me == 0) {
      std::string widths;
      for (int w : model->metadata().exchange_widths) widths += " " + std::to_string(w);
      utils::logmesg(lmp, "pair_style hienet: graph exchange: local + ghost atoms, ghost cutoff "
                     "{} (cutoff {} A + skin {}, in units {}); node features exchanged before "
                     "each of {} equivariant blocks (widths{}, {})\n", cutoff_lammps + skin,
                     model->cutoff(), skin, update->unit_style, model->metadata().exchange_widths.size(), widths,
                     model->dtype());
    }
  } else if (comm->me == 0) {
    utils::logmesg(lmp, "pair_style hienet: graph local: local atoms, ghost neighbours folded "
                   "onto their owners\n");
  }
}

/* ----------------------------------------------------------------------
   per-atom size of the forward/reverse communication of graph exchange; must be set
   before Comm::init() sizes its buffers (after force->init(), i.e. init_style)
------------------------------------------------------------------------- */

void PairHIENet::set_comm_sizes()
{
  int size = 0;
  if (model)
    size = HIENetExchange::max_slots(model->metadata().exchange_widths,
                                     model->dtype() == "float32" ? hienet::RowType::Float32
                                                                 : hienet::RowType::Float64);
  comm_forward = comm_reverse = std::max(size, deviation.comm_slots());
}

/* ---------------------------------------------------------------------- */

double PairHIENet::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  const double rc = model->cutoff() * units.length;
  cutghost[i][j] = cutghost[j][i] = rc;
  return rc;
}

/* ---------------------------------------------------------------------- */

void PairHIENet::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  stop_if_failed_anywhere(nonfinite_position());

  graph.update(mode, list, type_species, model->cutoff() * units.length,
               model->num_message_passing_layers(), units);
  const int n_local = graph.num_local();
  const std::vector<int> &node_atom = graph.nodes();

  const hienet::AtomVirial atom_virial = cvflag_atom ? hienet::AtomVirial::Nine
      : vflag_atom                                   ? hienet::AtomVirial::Six
                                                     : hienet::AtomVirial::None;
  // Every rank must reach the exchanges of graph exchange, so a bad graph on any rank
  // stops all of them before the evaluation starts (and a bad result after it).
  std::string failure;
  try {
    model->validate(graph.graph());
  } catch (const hienet::NodeError &e) {
    failure = node_error_message(e);
  } catch (const std::exception &e) {
    failure = e.what();
  }
  stop_if_failed_anywhere(failure);
  try {
    if (mode == HIENetGraph::Mode::Exchange) {
      exchange.set_atom_nodes(&graph.atom_nodes());
      model->evaluate_exchange(graph.graph(), exchange, atom_virial, result);
    } else {
      model->evaluate(graph.graph(), atom_virial, result);
    }
  } catch (const hienet::NodeError &e) {
    failure = node_error_message(e);
  } catch (const std::exception &e) {
    failure = e.what();
  }
  stop_if_failed_anywhere(failure);
  if (log_sizes) report_graph_sizes();
  hienet_lammps::result_to_lammps_units(result, units);

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

  // every N steps: the other models of an ensemble on this graph (nothing above changes)
  if (deviation.due(update->ntimestep))
    deviation.compute(graph, mode, exchange, result, units,
                      [this](const std::string &failure) { stop_if_failed_anywhere(failure); });
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
    const std::vector<int> &node_atom = graph.nodes();
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
  double bytes = Pair::memory_usage() + graph.memory_usage() + deviation.memory_usage();
  bytes += sizeof(double) *
      (result.forces.capacity() + result.atom_energy.capacity() + result.atom_virial.capacity());
  return bytes;
}

/* ----------------------------------------------------------------------
   "hienet/deviation": the ensemble's deviation state, for compute hienet/deviation
------------------------------------------------------------------------- */

void *PairHIENet::extract(const char *name, int &dim)
{
  dim = 0;
  if (strcmp(name, "hienet/deviation") == 0) return &deviation;
  return nullptr;
}

/* ----------------------------------------------------------------------
   the log line of the issue: local/ghost nodes and edges per rank, min/max over ranks
   (collective: every rank calls it from compute())
------------------------------------------------------------------------- */

void PairHIENet::report_graph_sizes()
{
  log_sizes = false;
  double counts[3] = {static_cast<double>(graph.num_local()),    // not const: STUBS' MPI_Allreduce
                      static_cast<double>(graph.num_nodes() - graph.num_local()),
                      static_cast<double>(model->last_step().num_edges)};
  double lo[3], hi[3];
  MPI_Allreduce(counts, lo, 3, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(counts, hi, 3, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style hienet: graph per rank (min/max over {} ranks): local "
                   "nodes {:.0f}/{:.0f}, ghost nodes {:.0f}/{:.0f}, edges {:.0f}/{:.0f}; ghost "
                   "cutoff {} (units {})\n", comm->nprocs, lo[0], hi[0], lo[1], hi[1], lo[2],
                   hi[2], std::max(comm->cutghostuser, neighbor->cutneighmax),
                   update->unit_style);
}

/* ----------------------------------------------------------------------
   graph exchange: LAMMPS's communication calls these; HIENetExchange does the work
------------------------------------------------------------------------- */

int PairHIENet::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  return exchange.pack_forward(n, list, buf);
}

void PairHIENet::unpack_forward_comm(int n, int first, double *buf)
{
  exchange.unpack_forward(n, first, buf);
}

int PairHIENet::pack_reverse_comm(int n, int first, double *buf)
{
  return exchange.pack_reverse(n, first, buf);
}

void PairHIENet::unpack_reverse_comm(int n, int *list, double *buf)
{
  exchange.unpack_reverse(n, list, buf);
}
