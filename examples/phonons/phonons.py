"""Phonon band structure of diamond Si: HIENet model vs the SNAP reference it was trained on.

    python examples/phonons/phonons.py [--model si-demo] [--out si_phonons.png]

Finite displacements with phonopy on a 2×2×2 supercell of the conventional cell (64 atoms),
path Γ–X–W–K–Γ–L. Both potentials use the lattice constant each one relaxes to.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.filters import FrechetCellFilter  # noqa: E402
from ase.optimize import BFGS  # noqa: E402
from phonopy import Phonopy  # noqa: E402
from phonopy.structure.atoms import PhonopyAtoms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from generate_si_data import ReferenceCalculator  # noqa: E402

from hienet import HIENetCalculator  # noqa: E402

PATH = [[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.25, 0.75], [0.375, 0.375, 0.75], [0, 0, 0], [0.5, 0.5, 0.5]]
LABELS = ["Γ", "X", "W", "K", "Γ", "L"]


def relaxed_primitive(calc):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4, steps=200)
    return atoms


def band_structure(calc, points=40):
    prim = relaxed_primitive(calc)
    unit = PhonopyAtoms(symbols=prim.get_chemical_symbols(), cell=prim.cell.array,
                        scaled_positions=prim.get_scaled_positions())
    # supercell of the primitive cell equal to a 2x2x2 conventional supercell (64 atoms)
    phonon = Phonopy(unit, supercell_matrix=[[-1, 1, 1], [1, -1, 1], [1, 1, -1]] * np.array(2))
    phonon.generate_displacements(distance=0.01)
    forces = []
    for cell in phonon.supercells_with_displacements:
        atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        atoms.calc = calc
        forces.append(atoms.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    qpoints, connections = [], []
    for start, end in zip(PATH[:-1], PATH[1:]):
        qpoints.append(np.linspace(start, end, points))
        connections.append(True)
    phonon.run_band_structure(qpoints, path_connections=connections, labels=LABELS)
    bands = phonon.band_structure
    return bands, prim.cell.cellpar()[0] * np.sqrt(2)  # conventional lattice constant


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="si-demo", help="bundled name, checkpoint or exported file")
    parser.add_argument("--out", default="si_phonons.png")
    args = parser.parse_args()

    fig, ax = plt.subplots(figsize=(6, 4.5))
    x_axis = None  # the reference's path distances, so both lattices share one axis
    for name, calc, style in [("SNAP reference", ReferenceCalculator(), "k-"),
                              (f"HIENet ({args.model})", HIENetCalculator(args.model), "r--")]:
        bands, a = band_structure(calc)
        x_axis = x_axis or bands.distances
        for dist, freq in zip(x_axis, bands.frequencies):
            ax.plot(dist, freq, style, lw=1)
        ax.plot([], [], style, label=f"{name}, a = {a:.3f} Å")
        top = max(f.max() for f in bands.frequencies)
        print(f"{name}: a = {a:.4f} Å, highest frequency {top:.3f} THz")
    ticks = [d[0] for d in x_axis] + [x_axis[-1][-1]]
    ax.set_xticks(ticks, LABELS)
    for t in ticks:
        ax.axvline(t, color="0.8", lw=0.5)
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylabel("frequency (THz)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title("Si phonons")
    fig.tight_layout()
    fig.savefig(args.out, dpi=150)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
