/* ----------------------------------------------------------------------------------------
   Model deviation of an ensemble for pair_style hienet (see hienet_deviation.h for the
   syntax, the file layout and the definitions).
------------------------------------------------------------------------------------------ */

#include "hienet_deviation.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <numeric>

using namespace LAMMPS_NS;

namespace {

const char *const COLUMNS[] = {"max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f",
                               "min_devi_f", "avg_devi_f", "devi_e"};
constexpr int NCOLUMNS = 7;

std::string join(const std::vector<std::string> &items)
{
  std::string out;
  for (size_t k = 0; k < items.size(); ++k) out += (k ? " " : "") + items[k];
  return out;
}

// Population standard deviation of x[0], x[stride], ..., x[(K-1) stride], computed on the
// differences to x[0]: exactly 0 when all values are equal (a mean of K equal doubles need
// not round back to them), and no cancellation between large equal parts.
double spread(const double *x, int K, int stride)
{
  double mean = 0.0;
  for (int k = 1; k < K; ++k) mean += x[k * stride] - x[0];
  mean /= K;
  double var = 0.0;
  for (int k = 0; k < K; ++k) {
    const double d = (x[k * stride] - x[0]) - mean;
    var += d * d;
  }
  return std::sqrt(var / K);
}

// sigma_i = sqrt(<|F_k - <F>|^2>) of one atom from row = [F_0 F_1 ... F_{K-1}] (3 each);
// relative: / (|<F>| + eps)
double force_deviation(const double *row, int K, bool relative, double eps)
{
  double mean[3] = {0.0, 0.0, 0.0};
  for (int k = 1; k < K; ++k)
    for (int c = 0; c < 3; ++c) mean[c] += row[3 * k + c] - row[c];
  for (double &m : mean) m /= K;
  double var = 0.0;
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < 3; ++c) {
      const double d = (row[3 * k + c] - row[c]) - mean[c];
      var += d * d;
    }
  double sigma = std::sqrt(var / K);
  if (relative) {
    double norm = 0.0;
    for (int c = 0; c < 3; ++c) norm += (row[c] + mean[c]) * (row[c] + mean[c]);
    sigma /= std::sqrt(norm) + eps;
  }
  return sigma;
}

}    // namespace

/* ---------------------------------------------------------------------- */

HIENetDeviation::HIENetDeviation(LAMMPS *lmp) : Pointers(lmp) {}

HIENetDeviation::~HIENetDeviation()
{
  if (fp) fclose(fp);
}

void HIENetDeviation::clear()
{
  if (fp) fclose(fp);
  fp = nullptr;
  paths.clear();
  models.clear();
  results.clear();
  requested = false;
  every = 0;
  file = "model_devi.out";
  relative = false;
  eps = 0.0;
  atomic = false;
  sigma.clear();
  step_computed = -1;
}

/* ----------------------------------------------------------------------
   deviation every N [file FILE] [relative EPS] [atomic yes|no]
------------------------------------------------------------------------- */

int HIENetDeviation::parse(int narg, char **arg, int iarg)
{
  requested = true;
  bool have_every = false;
  ++iarg;    // "deviation"
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (key != "every" && key != "file" && key != "relative" && key != "atomic") break;
    if (iarg + 1 >= narg)
      utils::missing_cmd_args(FLERR, "pair_style hienet deviation " + key, error);
    const std::string value = arg[iarg + 1];
    if (key == "every") {
      const long long n = utils::is_integer(value) ? std::strtoll(value.c_str(), nullptr, 10) : 0;
      if (n < 1 || n > std::numeric_limits<int>::max())    // strtoll saturates, never throws
        error->all(FLERR, "pair_style hienet deviation every {}: the interval must be a "
                   "positive integer (timesteps)", value);
      every = static_cast<int>(n);
      have_every = true;
    } else if (key == "file") {
      file = value;
    } else if (key == "relative") {
      const double x = utils::is_double(value) ? std::strtod(value.c_str(), nullptr) : 0.0;
      if (!(x > 0.0) || !std::isfinite(x))
        error->all(FLERR, "pair_style hienet deviation relative {}: EPS must be a positive "
                   "number (force units), added to |<F_i>| in sigma_i / (|<F_i>| + EPS)", value);
      relative = true;
      eps = x;
    } else {    // atomic
      if (value == "yes") atomic = true;
      else if (value == "no") atomic = false;
      else error->all(FLERR, "pair_style hienet deviation atomic {}: use yes or no", value);
    }
    iarg += 2;
  }
  if (!have_every)
    error->all(FLERR, "pair_style hienet deviation needs 'every N' (write the model deviation "
               "every N timesteps), e.g. 'deviation every 10 file model_devi.out'");
  return iarg;
}

void HIENetDeviation::check_settings(const std::string &first_path)
{
  if (requested && paths.empty())
    error->all(FLERR, "pair_style hienet deviation needs at least two model files (the first "
               "drives the dynamics, the others are compared with it); only {} was given",
               first_path);
}

/* ---------------------------------------------------------------------- */

void HIENetDeviation::load(const hienet::Model &first, const std::string &first_path,
                           const hienet::Options &options)
{
  models.clear();
  for (const std::string &path : paths) {
    std::string message;
    std::unique_ptr<hienet::Model> model;
    try {
      model = std::make_unique<hienet::Model>(path, options);
    } catch (const std::exception &e) {
      message = e.what();
    }
    int failed = message.empty() ? 0 : 1, nfailed = 0;
    MPI_Allreduce(&failed, &nfailed, 1, MPI_INT, MPI_SUM, world);
    if (nfailed == comm->nprocs) error->all(FLERR, "pair_style hienet deviation: {}", message);
    if (failed) error->one(FLERR, "pair_style hienet deviation: {}", message);
    if (nfailed) error->all(FLERR, "pair_style hienet deviation: {} could not be loaded on all "
                            "ranks", path);

    // every model must see the same graph as the first and give comparable numbers
    const std::string both = fmt::format("models {} and {}", first_path, path);
    const std::string rule = "all models of an ensemble must share cutoff, species and dtype";
    if (model->cutoff() != first.cutoff())
      error->all(FLERR, "pair_style hienet deviation: {} differ in cutoff ({} A vs {} A); {}",
                 both, first.cutoff(), model->cutoff(), rule);
    if (model->species() != first.species())
      error->all(FLERR, "pair_style hienet deviation: {} differ in species ({} has [{}], {} has "
                 "[{}]); {} (in the same order)", both, first_path, join(first.species()), path,
                 join(model->species()), rule);
    if (model->dtype() != first.dtype())
      error->all(FLERR, "pair_style hienet deviation: {} differ in dtype ({} vs {}); {}", both,
                 first.dtype(), model->dtype(), rule);
    models.push_back(std::move(model));
  }
  results.resize(models.size());
  if (models.empty()) return;

  if (comm->me == 0) {
    std::string list;
    for (const auto &m : models)
      list += fmt::format("\n  {} ({})", m->path(),
                          m->metadata().model_hash.empty() ? "no hash" : m->metadata().model_hash);
    utils::logmesg(lmp, "pair_style hienet: model deviation of {} models every {} steps to {}{}{}"
                   " (the first drives the dynamics); compared models:{}\n", models.size() + 1,
                   every, file, relative ? fmt::format(", relative to |<F_i>| + {}", eps) : "",
                   atomic ? ", per-atom values" : "", list);
  }
  open_file();
}

void HIENetDeviation::init(HIENetGraph::Mode mode, const hienet::Model &first,
                           const std::string &first_path)
{
  if (mode != HIENetGraph::Mode::Ghost) return;
  // graph ghost carries ghosts out to the first model's layers x cutoff only
  for (const auto &m : models)
    if (m->num_message_passing_layers() != first.num_message_passing_layers())
      error->all(FLERR, "pair_style hienet deviation with graph ghost: models {} and {} differ "
                 "in message-passing layers ({} vs {}), so the ghost shell of the first does "
                 "not fit the other; use graph exchange (or local on one rank)", first_path,
                 m->path(), first.num_message_passing_layers(), m->num_message_passing_layers());
}

int HIENetDeviation::comm_slots() const
{
  if (models.empty()) return 0;
  int slots = HIENetExchange::slots(3 * (static_cast<int>(models.size()) + 1),
                                    hienet::RowType::Float64);
  for (const auto &m : models)
    slots = std::max(slots, HIENetExchange::max_slots(m->metadata().exchange_widths,
                                                      m->dtype() == "float32"
                                                          ? hienet::RowType::Float32
                                                          : hienet::RowType::Float64));
  return slots;
}

/* ----------------------------------------------------------------------
   the output file: created by rank 0 when the models are loaded
------------------------------------------------------------------------- */

void HIENetDeviation::open_file()
{
  if (fp) fclose(fp);
  fp = nullptr;
  std::string message;
  if (comm->me == 0) {
    fp = fopen(file.c_str(), "w");
    if (!fp) message = std::strerror(errno);
    else write_header();
  }
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, world);
  if (length)
    error->all(FLERR, "pair_style hienet deviation: cannot open file {} for writing: {}", file,
               message.empty() ? "see rank 0" : message);
}

void HIENetDeviation::write_header()
{
  std::string line = fmt::format("#{:>11}", "step");
  for (const char *c : COLUMNS) line += fmt::format("{:>19}", c);
  if (atomic) line += fmt::format("{:>19}", "atm_devi_f(N)");
  fputs((line + "\n").c_str(), fp);
  fflush(fp);
}

/* ---------------------------------------------------------------------- */

void HIENetDeviation::compute(const HIENetGraph &graph, HIENetGraph::Mode mode,
                              HIENetExchange &exchange, const hienet::Result &first,
                              const hienet_lammps::UnitFactors &units,
                              const std::function<void(const std::string &)> &stop_if_failed)
{
  const int K = static_cast<int>(models.size()) + 1;
  const hienet::Graph g = graph.graph();
  const std::vector<int> &node_atom = graph.nodes();

  // 1. the other models on the same graph (their own results; nothing of the pair's)
  for (size_t m = 0; m < models.size(); ++m) {
    std::string failure;
    try {
      if (mode == HIENetGraph::Mode::Exchange) {
        exchange.set_atom_nodes(&graph.atom_nodes());
        models[m]->evaluate_exchange(g, exchange, hienet::AtomVirial::None, results[m]);
      } else {
        models[m]->evaluate(g, hienet::AtomVirial::None, results[m]);
      }
    } catch (const hienet::NodeError &e) {
      const bool named = e.node_i >= 0 && e.node_i < static_cast<int64_t>(node_atom.size());
      failure = e.kind == hienet::NodeError::Kind::NonFiniteOutput && named
          ? fmt::format("model {} returned a non-finite energy or force for atom {}",
                        models[m]->path(), atom->tag[node_atom[e.node_i]])
          : fmt::format("model {}: {}", models[m]->path(), e.what());
    } catch (const std::exception &e) {
      failure = e.what();
    }
    stop_if_failed(failure.empty() ? failure : "deviation: " + failure);
    hienet_lammps::result_to_lammps_units(results[m], units);
  }

  // 2. forces of every model per atom; ghost rows are added into their owners
  const int nall = atom->nlocal + atom->nghost;
  const int width = 3 * K;
  rows.assign(static_cast<size_t>(nall) * width, 0.0);
  for (size_t n = 0; n < node_atom.size(); ++n) {
    double *row = rows.data() + static_cast<size_t>(node_atom[n]) * width;
    for (int c = 0; c < 3; ++c) row[c] = first.forces[3 * n + c];
    for (int k = 1; k < K; ++k)
      for (int c = 0; c < 3; ++c) row[3 * k + c] = results[k - 1].forces[3 * n + c];
  }
  if (mode != HIENetGraph::Mode::Local) {    // local mode folds ghosts onto owners already
    if (static_cast<int>(all_atoms.size()) != nall) {
      all_atoms.resize(nall);
      std::iota(all_atoms.begin(), all_atoms.end(), 0);
    }
    exchange.set_atom_nodes(&all_atoms);
    exchange.reverse(rows.data(), nall, width, hienet::RowType::Float64);
    exchange.set_atom_nodes(&graph.atom_nodes());
  }

  // 3. sigma_i of the local atoms hienet handles
  const int n_local = graph.num_local();
  sigma.assign(atom->nlocal, 0.0);
  double sigma_max = 0.0, sigma_min = std::numeric_limits<double>::infinity();
  std::vector<double> sums(2 + 7 * K, 0.0);    // sum sigma, N, E_k, W_k (6 each)
  for (int n = 0; n < n_local; ++n) {
    const int a = node_atom[n];
    const double s = force_deviation(rows.data() + static_cast<size_t>(a) * width, K, relative,
                                     eps);
    sigma[a] = s;
    sigma_max = std::max(sigma_max, s);
    sigma_min = std::min(sigma_min, s);
    sums[0] += s;
  }
  sums[1] = n_local;
  for (int k = 0; k < K; ++k) {
    const hienet::Result &r = k == 0 ? first : results[k - 1];
    sums[2 + k] = r.energy;
    for (int j = 0; j < 6; ++j) sums[2 + K + 6 * k + j] = r.virial[j];
  }

  // 4. exact reductions over ranks
  std::vector<double> total(sums.size());
  MPI_Allreduce(sums.data(), total.data(), static_cast<int>(sums.size()), MPI_DOUBLE, MPI_SUM,
                world);
  double extremes[2] = {sigma_max, -sigma_min}, all_extremes[2];
  MPI_Allreduce(extremes, all_extremes, 2, MPI_DOUBLE, MPI_MAX, world);
  step_computed = update->ntimestep;

  double values[NCOLUMNS] = {0, 0, 0, 0, 0, 0, 0};
  const double N = total[1];
  if (N > 0) {
    std::vector<double> per_atom(K);
    double sv[6];
    for (int j = 0; j < 6; ++j) {
      for (int k = 0; k < K; ++k) per_atom[k] = total[2 + K + 6 * k + j] / N;
      sv[j] = spread(per_atom.data(), K, 1);
    }
    // the 9 components of the symmetric virial: xy, xz, yz count twice
    values[0] = *std::max_element(sv, sv + 6);
    values[1] = *std::min_element(sv, sv + 6);
    values[2] = std::sqrt((sv[0] * sv[0] + sv[1] * sv[1] + sv[2] * sv[2] +
                           2.0 * (sv[3] * sv[3] + sv[4] * sv[4] + sv[5] * sv[5])) / 9.0);
    values[3] = all_extremes[0];
    values[4] = -all_extremes[1];
    values[5] = total[0] / N;
    for (int k = 0; k < K; ++k) per_atom[k] = total[2 + k] / N;
    values[6] = spread(per_atom.data(), K, 1);
  }

  // 5. rank 0 writes the line (and the per-atom values, gathered in atom-ID order)
  std::string line;
  if (comm->me == 0) {
    line = fmt::format("{:>12}", update->ntimestep);
    for (double v : values) line += fmt::format(" {:>18.10e}", v);
  }
  if (atomic) {
    std::vector<tagint> tags(n_local);
    std::vector<double> local(n_local);
    for (int n = 0; n < n_local; ++n) {
      tags[n] = atom->tag[node_atom[n]];
      local[n] = sigma[node_atom[n]];
    }
    const int nprocs = comm->nprocs;
    std::vector<int> counts(nprocs), displs(nprocs);
    int mine = n_local;
    MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    int all = 0;
    if (comm->me == 0)
      for (int p = 0; p < nprocs; ++p) {
        displs[p] = all;
        all += counts[p];
      }
    std::vector<tagint> all_tags(comm->me == 0 ? all : 0);
    std::vector<double> all_sigma(comm->me == 0 ? all : 0);
    MPI_Gatherv(tags.data(), n_local, MPI_LMP_TAGINT, all_tags.data(), counts.data(),
                displs.data(), MPI_LMP_TAGINT, 0, world);
    MPI_Gatherv(local.data(), n_local, MPI_DOUBLE, all_sigma.data(), counts.data(),
                displs.data(), MPI_DOUBLE, 0, world);
    if (comm->me == 0) {
      std::vector<int> order(all);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(),
                [&](int a, int b) { return all_tags[a] < all_tags[b]; });
      for (int k : order) line += fmt::format(" {:>18.10e}", all_sigma[k]);
    }
  }
  if (comm->me == 0 && fp) {
    fputs((line + "\n").c_str(), fp);
    fflush(fp);    // selection tools may read the file while the run goes on
  }
}

/* ---------------------------------------------------------------------- */

double HIENetDeviation::memory_usage() const
{
  double bytes = sizeof(double) * (rows.capacity() + sigma.capacity()) +
      sizeof(int) * all_atoms.capacity();
  for (const auto &r : results)
    bytes += sizeof(double) * (r.forces.capacity() + r.atom_energy.capacity() +
                               r.atom_virial.capacity());
  return bytes;
}
