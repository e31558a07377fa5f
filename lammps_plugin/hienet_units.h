/* -*- c++ -*- ----------------------------------------------------------------------------
   Unit conversion between a LAMMPS unit style and HIENet's eV / Å, done once at the
   boundary of pair_style hienet:

     edge vectors   LAMMPS length -> Å            (divide by `length`)
     energies       eV -> LAMMPS energy           (multiply by `energy`)
     forces         eV/Å -> LAMMPS force          (multiply by `energy / length`)
     virials        eV -> LAMMPS energy           (multiply by `energy`; LAMMPS applies nktv2p)
     cutoffs        Å -> LAMMPS length            (multiply by `length`)

   Both factors come from LAMMPS's own constants for the current unit style:
     length = force->angstrom                     (1 Å in LAMMPS length units)
     energy = force->boltz / BOLTZ_METAL          (1 eV in LAMMPS energy units)
   k_B is the one energy constant LAMMPS defines in every unit style, so with this ratio a
   thermostat at T sees the same k_B T relative to the model's energies in every style
   (DeePMD-kit's pair style converts the same way). For `units metal` both factors are
   exactly 1 and nothing is rescaled. `units lj` is dimensionless and refused.

   No LAMMPS and no torch headers here: hienet/model.h only.
------------------------------------------------------------------------------------------ */

#ifndef LMP_HIENET_UNITS_H
#define LMP_HIENET_UNITS_H

#include "hienet/model.h"

#include <string>
#include <vector>

namespace hienet_lammps {

// k_B in eV/K exactly as LAMMPS defines it for `units metal` (force->boltz there);
// tests/test_lammps_units.py checks it against the running LAMMPS.
constexpr double BOLTZ_METAL = 8.617343e-5;

struct UnitFactors {
  double length = 1.0;    // LAMMPS length units per Å
  double energy = 1.0;    // LAMMPS energy units per eV

  bool identity() const { return length == 1.0 && energy == 1.0; }
  double force() const { return energy / length; }
};

// The factors for a LAMMPS unit style; `error` is set (and identity returned) for `lj`.
inline UnitFactors unit_factors(const std::string &unit_style, double angstrom, double boltz,
                                std::string &error)
{
  UnitFactors u;
  error.clear();
  if (unit_style == "lj") {
    error = "Pair style hienet cannot run with 'units lj': HIENet models are trained in eV "
            "and Angstrom and lj units are dimensionless; use units metal (or real, si, cgs, "
            "electron, micro, nano, which pair_style hienet converts)";
    return u;
  }
  if (unit_style == "metal") return u;    // exactly 1, no rounding from the ratio
  u.length = angstrom;
  u.energy = boltz / BOLTZ_METAL;
  if (!(u.length > 0.0) || !(u.energy > 0.0))
    error = "Pair style hienet: cannot convert 'units " + unit_style +
        "' to eV and Angstrom (force->angstrom or force->boltz is not positive)";
  return u;
}

// LAMMPS length -> Å, in place (x, y, z of every edge).
inline void edge_vectors_to_angstrom(std::vector<double> &edge_vec, const UnitFactors &u)
{
  if (u.length == 1.0) return;
  for (double &v : edge_vec) v /= u.length;
}

// eV and eV/Å -> LAMMPS energy and force units, in place.
inline void result_to_lammps_units(hienet::Result &r, const UnitFactors &u)
{
  if (u.identity()) return;
  const double e = u.energy, f = u.force();
  r.energy *= e;
  for (double &v : r.atom_energy) v *= e;
  for (double &v : r.forces) v *= f;
  for (double &v : r.virial) v *= e;
  for (double &v : r.atom_virial) v *= e;
}

}    // namespace hienet_lammps

#endif
