/* ----------------------------------------------------------------------------------------
   compute hienet/deviation: per-atom force deviation of pair_style hienet's ensemble
   (see compute_hienet_deviation.h).
------------------------------------------------------------------------------------------ */

#include "compute_hienet_deviation.h"

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "pair.h"
#include "update.h"

#include "hienet_deviation.h"

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

ComputeHIENetDeviation::ComputeHIENetDeviation(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), nmax(0), sigma(nullptr), deviation(nullptr)
{
  if (narg != 3)
    error->all(FLERR, "compute hienet/deviation takes no arguments after the group: "
               "'compute ID group hienet/deviation'");
  peratom_flag = 1;
  size_peratom_cols = 0;
}

ComputeHIENetDeviation::~ComputeHIENetDeviation()
{
  memory->destroy(sigma);
}

/* ---------------------------------------------------------------------- */

void ComputeHIENetDeviation::init()
{
  // pair_style hienet alone or as the one hienet sub-style of pair_style hybrid
  Pair *pair = force->pair_match("hienet", 1);
  int dim = 0;
  deviation = pair ? static_cast<HIENetDeviation *>(pair->extract("hienet/deviation", dim))
                   : nullptr;
  if (!deviation)
    error->all(FLERR, "compute hienet/deviation needs pair_style hienet (once)");
  if (!deviation->enabled())
    error->all(FLERR, "compute hienet/deviation needs an ensemble: 'pair_style hienet m1.pt "
               "m2.pt ... deviation every N file FILE'");
}

/* ---------------------------------------------------------------------- */

void ComputeHIENetDeviation::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  if (deviation->computed_step() != update->ntimestep)
    error->all(FLERR, "compute hienet/deviation is used at step {}, but pair_style hienet "
               "computes the model deviation every {} steps (deviation every {}): use it only "
               "at multiples of {} (e.g. dump every {})", update->ntimestep,
               deviation->every_steps(), deviation->every_steps(), deviation->every_steps(),
               deviation->every_steps());

  if (atom->nmax > nmax) {
    memory->destroy(sigma);
    nmax = atom->nmax;
    memory->create(sigma, nmax, "hienet/deviation:sigma");
    vector_atom = sigma;
  }
  const std::vector<double> &values = deviation->atom_deviation();
  const int nlocal = atom->nlocal;
  const int *mask = atom->mask;
  for (int i = 0; i < nlocal; i++)
    sigma[i] = (mask[i] & groupbit) && i < static_cast<int>(values.size()) ? values[i] : 0.0;
}

/* ---------------------------------------------------------------------- */

double ComputeHIENetDeviation::memory_usage()
{
  return sizeof(double) * nmax;
}
