"""Relax a Si cell (positions and lattice) with the HIENet ASE calculator.

    python examples/ase/relax.py [--model si-demo] [--fmax 0.01]
"""
import argparse

from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from hienet import HIENetCalculator


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="si-demo", help="bundled name, checkpoint or exported file")
    parser.add_argument("--fmax", type=float, default=0.01, help="force/stress tolerance (eV/Å)")
    args = parser.parse_args()

    atoms = bulk("Si", "diamond", a=5.60, cubic=True)  # start 3 % expanded
    atoms.rattle(0.05, seed=0)
    atoms.calc = HIENetCalculator(args.model)
    BFGS(FrechetCellFilter(atoms), logfile="-").run(fmax=args.fmax, steps=200)
    a = atoms.cell.lengths()
    print(f"relaxed lattice: {a[0]:.4f} {a[1]:.4f} {a[2]:.4f} Å, "
          f"E = {atoms.get_potential_energy() / len(atoms):.4f} eV/atom")


if __name__ == "__main__":
    main()
