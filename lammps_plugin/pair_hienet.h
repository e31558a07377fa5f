/* -*- c++ -*- ----------------------------------------------------------------------------
   pair_style hienet: the HIENet machine-learning potential, evaluated by the HIENet C++
   runtime (cpp/) on an exported TorchScript model (export/FORMAT.md).

     pair_style hienet model.pt [device auto|cpu|cuda] [graph auto|local|exchange|ghost]
     pair_style hienet m1.pt m2.pt ... deviation every N [file FILE] [relative EPS]
                       [atomic yes|no] [device ...] [graph ...]   (ensemble: hienet_deviation.h)
     pair_coeff * * El1 El2 ... ElN        (one element per atom type; NULL skips a type
                                            under pair_style hybrid)

   Graph modes (graph building: hienet_graph.h; inter-rank exchange: hienet_exchange.h):
     local     one MPI rank only: nodes are the local atoms; ghost neighbours are folded
               onto the local atoms they image (through their atom IDs), so the cost does
               not grow with the receptive field.
     exchange  nodes are the local atoms and LAMMPS's ghost atoms (ghost cutoff = cutoff +
               skin); edges are centred on local atoms; the model runs layer by layer and
               before each equivariant block the node features of owners are copied to
               their ghosts by forward communication; in the backward pass gradients on
               ghost rows go back to their owners by reverse communication. Needs a model
               file of format version 2 and newton pair on.
     ghost     nodes are local atoms plus the ghost atoms within num_message_passing_layers
               graph hops; the ghost cutoff is raised to layers x cutoff + skin; the model
               runs in one piece; energy counts local atoms only. A reference for tests and
               the fallback for format-version-1 files (needs newton pair on).
     auto      local on one rank, exchange on several (the default); ghost, with a warning,
               for a format-version-1 file.
   Forces on ghost atoms go back to their owners by LAMMPS's newton-on reverse
   communication.

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
#include "hienet_deviation.h"
#include "hienet_exchange.h"
#include "hienet_graph.h"
#include "hienet_units.h"

#include <memory>
#include <string>
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
  void *extract(const char *, int &) override;

  // graph exchange: LAMMPS calls these during comm->forward/reverse_comm(this)
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

 protected:
  enum class GraphRequest { Auto, Local, Exchange, Ghost };

  std::unique_ptr<hienet::Model> model;
  std::string model_path;
  hienet::Device device_choice;
  GraphRequest graph_request;
  HIENetGraph::Mode mode;           // resolved in init_style()
  bool log_sizes;                   // report graph sizes at the next compute()
  hienet_lammps::UnitFactors units; // LAMMPS units per Å / per eV, set in init_style()

  std::vector<int> type_species;    // [ntypes+1]: model species index, -1 for NULL
  std::vector<std::string> type_element;

  HIENetGraph graph;
  HIENetExchange exchange;
  hienet::Result result;
  HIENetDeviation deviation;        // the models after the first (ensemble)

  void allocate();
  void load_model();
  void set_comm_sizes();
  void report_graph_sizes();
  std::string nonfinite_position();
  std::string node_error_message(const hienet::NodeError &);
  void stop_if_failed_anywhere(const std::string &failure);
};

}    // namespace LAMMPS_NS

#endif
#endif
