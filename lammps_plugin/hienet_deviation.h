/* -*- c++ -*- ----------------------------------------------------------------------------
   Model deviation of an ensemble for pair_style hienet (active learning, DeePMD-kit style):

     pair_style hienet m1.pt m2.pt [m3.pt ...] deviation every N [file FILE]
                       [relative EPS] [atomic yes|no] [device ...] [graph ...]

   The first model drives the dynamics at full speed. Every N steps the other models are
   evaluated on the same graph (one neighbour list, one graph build, every graph mode), and
   rank 0 appends one line to FILE (default model_devi.out) in DeePMD-kit's model_devi.out
   layout, in LAMMPS units (K models, N atoms handled by hienet, <.> the mean over models,
   std the population standard deviation over models):

     step  max_devi_v min_devi_v avg_devi_v  max_devi_f min_devi_f avg_devi_f  devi_e
           [atm_devi_f(N): sigma_i of every atom in ascending atom-ID order, `atomic yes`]

     sigma_i = sqrt(< |F_i,k - <F_i>|^2 >)            force deviation of atom i
               / (|<F_i>| + EPS)                       with `relative EPS`
     max/min/avg_devi_f: over atoms (avg = sum / N)
     sigma_ab = std(W_ab,k / N)                        virial deviation per component,
               over the 9 components of the (symmetric) virial W; avg_devi_v is their root
               mean square (DeePMD-kit's sqrt(sum sigma_ab^2 / 9))
     devi_e  = std(E_k / N)                            energy deviation per atom (the column
               `dp model-devi` writes: total energies, no per-atom decomposition)

   Forces on ghost nodes (graph exchange, graph ghost) are sent to their owners by the pair's
   reverse communication (HIENetExchange over all atoms, one column triple per model) before
   sigma_i is computed. Deviations are reduced over ranks exactly (MPI_Allreduce). The
   extra evaluations write only to this object: atom->f, the energy and virial
   accumulators of the pair stay those of the first model, so the trajectory is the same
   with and without deviation.

   `compute ID group hienet/deviation` (compute_hienet_deviation.h) reads sigma_i of the
   last deviation step through PairHIENet::extract("hienet/deviation").

   Includes LAMMPS headers, so never torch headers (see pair_hienet.cpp).
------------------------------------------------------------------------------------------ */

#ifndef LMP_HIENET_DEVIATION_H
#define LMP_HIENET_DEVIATION_H

#include "pointers.h"

#include "hienet/model.h"
#include "hienet_exchange.h"
#include "hienet_graph.h"
#include "hienet_units.h"

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class HIENetDeviation : protected Pointers {
 public:
  explicit HIENetDeviation(class LAMMPS *);
  ~HIENetDeviation() override;

  // pair_style settings: forget everything (a new pair_style command)
  void clear();
  // a model file after the first one
  void add_model_path(const std::string &path) { paths.emplace_back(path); }
  // parses "deviation every N [file FILE] [relative EPS] [atomic yes|no]" with arg[iarg] ==
  // "deviation"; returns the index of the first argument it did not take
  int parse(int narg, char **arg, int iarg);
  // error for `deviation` without extra models
  void check_settings(const std::string &first_path);

  // loads the extra models with the first model's options (collectively), checks that they
  // agree with the first (cutoff, species, dtype) and opens FILE on rank 0
  void load(const hienet::Model &first, const std::string &first_path,
            const hienet::Options &options);
  // init_style: checks that need the graph mode
  void init(HIENetGraph::Mode mode, const hienet::Model &first, const std::string &first_path);

  bool enabled() const { return !models.empty(); }
  bool due(bigint step) const { return enabled() && step % every == 0; }
  int every_steps() const { return every; }
  // doubles per atom the pair's forward/reverse buffers must hold for this object
  int comm_slots() const;

  // evaluates the extra models on the pair's graph, combines them with the first model's
  // `first` (LAMMPS units), reduces over ranks and writes a line (collective)
  void compute(const HIENetGraph &graph, HIENetGraph::Mode mode, HIENetExchange &exchange,
               const hienet::Result &first, const hienet_lammps::UnitFactors &units,
               const std::function<void(const std::string &)> &stop_if_failed);

  // sigma_i of local atom i at step computed_step() (0 for atoms hienet does not handle)
  const std::vector<double> &atom_deviation() const { return sigma; }
  bigint computed_step() const { return step_computed; }
  double memory_usage() const;

 private:
  std::vector<std::string> paths;    // extra model files, in pair_style order
  std::vector<std::unique_ptr<hienet::Model>> models;
  std::vector<hienet::Result> results;
  bool requested = false;            // `deviation` given
  int every = 0;
  std::string file = "model_devi.out";
  bool relative = false;
  double eps = 0.0;
  bool atomic = false;
  FILE *fp = nullptr;

  std::vector<double> rows;          // [nall][3 K] forces of every model per atom
  std::vector<int> all_atoms;        // identity atom -> row map for the reverse comm
  std::vector<double> sigma;         // [nlocal]
  bigint step_computed = -1;

  void open_file();
  void write_header();
};

}    // namespace LAMMPS_NS

#endif
