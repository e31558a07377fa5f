"""special_bonds with a molecular atom style (issue 17).

LAMMPS removes 1-2, 1-3 and 1-4 pairs whose special_bonds lj and coul factors are both 0 (the
default) from the neighbour list; pair_style hienet would then silently miss them (a 64-atom Si
cell with bonds: -263.5 instead of -343.9 eV). init_style refuses that and names the command to
use; with any other factors the pairs stay and the style, which ignores the factors, must give
the energy and forces of the same structure in atom_style atomic.
"""
import numpy as np
import pytest

from lammps_helpers import LammpsError, run_lammps

from conftest import REPO

MODEL = REPO / "hienet" / "data" / "si-demo.pt"


def write_data(path, atoms, style, bonds=()):
    """A LAMMPS data file of an orthogonal periodic cell, atom_style atomic or bond."""
    lengths = atoms.cell.lengths()
    lines = ["# Si (special_bonds test)", "", f"{len(atoms)} atoms", "1 atom types"]
    if style == "bond":
        lines += [f"{len(bonds)} bonds", "1 bond types"]
    lines += ["", *(f"0.0 {float(x)!r} {a}lo {a}hi" for x, a in zip(lengths, "xyz")), "",
              "Masses", "", "1 28.0855", "", f"Atoms # {style}", ""]
    molecule = " 1" if style == "bond" else ""
    for k, (x, y, z) in enumerate(atoms.positions):
        lines.append(f"{k + 1}{molecule} 1 {float(x)!r} {float(y)!r} {float(z)!r}")
    if style == "bond":
        lines += ["", "Bonds", ""] + [f"{k + 1} 1 {a} {b}" for k, (a, b) in enumerate(bonds)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    """A rattled 64-atom Si cell as an atomic data file and as a bond data file with a bond
    between every pair closer than 2.6 Å (the diamond nearest neighbours)."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    atoms.wrap()
    n = len(atoms)
    distances = atoms.get_all_distances(mic=True)
    bonds = [(i + 1, j + 1) for i in range(n) for j in range(i + 1, n) if distances[i, j] < 2.6]
    assert len(bonds) == 2 * n          # four bonds per atom: 1-2, 1-3 and 1-4 pairs all exist
    folder = tmp_path_factory.mktemp("special_bonds")
    write_data(folder / "atomic.data", atoms, "atomic")
    write_data(folder / "bond.data", atoms, "bond", bonds)
    return folder, folder / "atomic.data", folder / "bond.data"


def run(folder, data, style, special_bonds, tag):
    bond = "bond_style zero\n" if style == "bond" else ""
    coeff = "bond_coeff 1\n" if style == "bond" else ""
    script = f"""
units metal
atom_style {style}
{bond}{special_bonds}
read_data {data}
{coeff}pair_style hienet {MODEL}
pair_coeff * * Si
dump d all custom 1 {folder / (tag + '.dump')} id fx fy fz
dump_modify d sort id format float %.17g
run 0
print "$(pe:%.17g)" file {folder / (tag + '.pe')} screen no
"""
    run_lammps(script, folder)
    forces = np.loadtxt(folder / f"{tag}.dump", skiprows=9)[:, 1:]
    return float((folder / f"{tag}.pe").read_text()), forces


@pytest.mark.parametrize("special_bonds", ["", "special_bonds lj/coul 0.0 1.0 1.0"])
def test_zero_factors_are_refused(structure, special_bonds):
    folder, _, bonded = structure
    with pytest.raises(LammpsError) as err:
        run(folder, bonded, "bond", special_bonds, "zero")
    message = str(err.value)
    assert "special_bonds" in message and "special_bonds lj/coul 1.0 1.0 1.0" in message
    assert "1-2 pairs" in message


@pytest.mark.parametrize("special_bonds", ["special_bonds lj/coul 0.5 0.5 0.5",
                                           "special_bonds lj/coul 1.0 1.0 1.0",
                                           "special_bonds lj 0.0 0.0 0.0 coul 1.0 1.0 1.0"])
def test_non_zero_factors_give_the_atomic_result(structure, special_bonds):
    folder, atomic, bonded = structure
    e_atomic, f_atomic = run(folder, atomic, "atomic", "", "atomic")
    e_bond, f_bond = run(folder, bonded, "bond", special_bonds, "bond")
    assert abs(e_bond - e_atomic) <= 1e-10 * abs(e_atomic)
    np.testing.assert_allclose(f_bond, f_atomic, rtol=0, atol=1e-10)
    assert np.abs(f_atomic).max() > 0.1
