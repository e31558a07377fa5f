"""NVT molecular dynamics of diamond Si with the HIENet ASE calculator (Langevin, 300 K).

    python examples/ase/md.py [--model si-demo] [--steps 200] [--temperature 300]
"""
import argparse

import numpy as np

from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from hienet import HIENetCalculator


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="si-demo", help="bundled name, checkpoint or exported file")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--size", type=int, default=2, help="supercell repeats of the 8-atom cell")
    args = parser.parse_args()

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(args.size)
    atoms.calc = HIENetCalculator(args.model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=args.temperature, friction=0.02, rng=np.random.default_rng(1))

    def report():
        epot = atoms.get_potential_energy() / len(atoms)
        ekin = atoms.get_kinetic_energy() / len(atoms)
        print(f"step {dyn.nsteps:5d}  T = {ekin / (1.5 * units.kB):7.1f} K  Epot = {epot:.4f} eV/atom")

    dyn.attach(report, interval=20)
    dyn.run(args.steps)


if __name__ == "__main__":
    main()
