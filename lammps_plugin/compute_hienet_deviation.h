/* -*- c++ -*- ----------------------------------------------------------------------------
   compute ID group-ID hienet/deviation

   Per-atom vector: the force deviation sigma_i of pair_style hienet's ensemble
   (hienet_deviation.h: sqrt(<|F_i,k - <F_i>|^2>) over the models, divided by
   |<F_i>| + EPS with `relative EPS`) at the last deviation step, in force units; 0 for atoms
   outside the group or not handled by hienet. The pair style computes it every N steps
   (`deviation every N`), so dumps or fixes must use it at multiples of N:

     pair_style hienet m1.pt m2.pt m3.pt deviation every 10 file model_devi.out
     compute    dev all hienet/deviation
     dump       d all custom 10 traj.dump id type element x y z c_dev

   Includes LAMMPS headers, so never torch headers (see pair_hienet.cpp).
------------------------------------------------------------------------------------------ */

#ifndef LMP_COMPUTE_HIENET_DEVIATION_H
#define LMP_COMPUTE_HIENET_DEVIATION_H

#include "compute.h"

namespace LAMMPS_NS {

class ComputeHIENetDeviation : public Compute {
 public:
  ComputeHIENetDeviation(class LAMMPS *, int, char **);
  ~ComputeHIENetDeviation() override;
  void init() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  int nmax;
  double *sigma;
  class HIENetDeviation *deviation;
};

}    // namespace LAMMPS_NS

#endif
