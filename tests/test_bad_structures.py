"""Bad structures end in an error naming the atoms or the cell, never in NaN or a crash.

Covers the ASE calculator (checkpoint and exported file), hienet.deploy and graph building
(the trainer's datasets use the same graph builder: tests/test_train_safety.py).
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import CalculationFailed
from ase.neighborlist import primitive_neighbor_list

from hienet.calculator import HIENetCalculator
from hienet.graph import build_graph, keys
from hienet.pretrained import bundled_model_path

from conftest import make_model

MODELS = {"checkpoint": "si-demo", "exported": bundled_model_path("si-demo", exported=True)}


def silicon():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.fixture(scope="module", params=list(MODELS))
def calc(request):
    return HIENetCalculator(MODELS[request.param])


def energy(calc, atoms):
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_coincident_atoms_are_named(calc):
    atoms = silicon()
    atoms.positions[5] = atoms.positions[2]
    with pytest.raises(ValueError, match=r"atom 2 \(Si\) and atom 5 \(Si\) are 0 Å apart \(< 0.1 Å\)"):
        energy(calc, atoms)


def test_overlap_across_the_periodic_boundary_is_named(calc):
    atoms = silicon()
    atoms.positions[3] = atoms.positions[0] + atoms.cell[1] + [0.03, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"atom 0 \(Si\) and atom 3 \(Si\) are 0.03 Å apart"):
        energy(calc, atoms)


def test_close_contact_above_the_threshold_is_fine(calc):
    atoms = silicon()
    atoms.positions[5] = atoms.positions[2] + [0.0, 0.0, 0.5]
    assert np.isfinite(energy(calc, atoms))
    assert np.isfinite(atoms.get_forces()).all()


def test_non_finite_position_is_named(calc):
    atoms = silicon()
    atoms.positions[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"atom 4 \(Si\) has a non-finite position \[.*nan"):
        energy(calc, atoms)


def test_cell_thinner_than_the_threshold(calc):
    atoms = Atoms("Si", positions=[[0, 0, 0]], cell=[5.0, 5.0, 0.05], pbc=True)
    with pytest.raises(ValueError, match="cell is 0.05 Å thin along cell vector 2"):
        energy(calc, atoms)


def test_own_periodic_image_too_close():
    """A lattice vector shorter than the threshold (b - a here) makes the cell that thin."""
    cell = np.array([[5.0, 0.0, 0.0], [5.05, 1e-3, 0.0], [0.0, 0.0, 5.0]])
    with pytest.raises(ValueError, match="cell is 0.00099 Å thin along cell vector 0"):
        build_graph(np.zeros((1, 3)), cell, True, 5.0)
    with pytest.raises(ValueError, match="cell is 0.05 Å thin along cell vector 0"):  # one periodic axis
        build_graph(np.zeros((1, 3)), np.diag([0.05, 5.0, 5.0]), [True, False, False], 5.0)


def test_non_finite_model_output_names_the_atom():
    model = make_model("tiny")
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if "readout" in name or "linear" in name).fill_(np.nan)
    atoms = Atoms("SiO", positions=[[0, 0, 0], [1.6, 0, 0]], cell=[8, 8, 8], pbc=True)
    with pytest.raises(CalculationFailed, match=r"HIENet module returned a non-finite energy or force for atom 0 \(Si\)"):
        energy(HIENetCalculator(model), atoms)


def test_non_finite_output_of_an_exported_model(tmp_path):
    from hienet.deploy import DeployedModel
    from toy_model import write_toy_model

    broken = write_toy_model(tmp_path / "broken.pt", nan_species="Cl")
    atoms = Atoms("Na4Cl", positions=[[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [2.8, 2.8, 0], [30, 0, 0]])
    with pytest.raises(CalculationFailed, match=f"exported model {broken} returned a non-finite energy "
                                                r"or force for atom 4 \(Cl\)"):
        DeployedModel(broken).evaluate(atoms)


def test_threshold_is_the_shared_constant():
    assert keys.MIN_ATOM_DISTANCE == 0.1


# ---------------------------------------------------------------------------------------
# cases that crashed the process inside vesin (SIGFPE): run in a child, so that a regression
# fails this test instead of killing the test session
# ---------------------------------------------------------------------------------------
CRASH_CASES = textwrap.dedent(r'''
    import numpy as np
    from ase.build import bulk
    from hienet.graph import build_graph
    from hienet.calculator import HIENetCalculator

    def report(name, fn):
        try:
            fn()
            print(name, "OK", flush=True)
        except ValueError as err:
            print(name, "ValueError", str(err).replace("\n", " "), flush=True)

    calc = HIENetCalculator("si-demo")
    def nan_cell():
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.cell[0, 0] = np.nan
        atoms.calc = calc
        atoms.get_potential_energy()
    def inf_cell():
        build_graph(np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]], np.diag([5.0, np.inf, 5.0]), True, 5.0)
    def huge_cell():
        build_graph(np.array([[0.0, 0, 0], [1, 1, 1]]), np.eye(3) * 1e300, True, 5.0)
    def far_atom():   # a molecule and one atom 1e6 Å away, no periodicity
        build_graph(np.array([[0.0, 0, 0], [1, 1, 1], [2, 2, 2.5], [1e6, 0, 0]]), np.zeros((3, 3)), False, 5.0)
    def wide_slab():  # 2000 Å x 2000 Å, one layer, no periodicity
        g = np.arange(0, 2000.0, 400.0)
        pos = np.array([[x, y, 0.0] for x in g for y in g])
        build_graph(pos, np.zeros((3, 3)), False, 5.0)
    for name, fn in [("nan_cell", nan_cell), ("inf_cell", inf_cell), ("huge_cell", huge_cell),
                     ("far_atom", far_atom), ("wide_slab", wide_slab)]:
        report(name, fn)
''')


@pytest.fixture(scope="module")
def crash_cases():
    proc = subprocess.run([sys.executable, "-c", CRASH_CASES], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the process died (code {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-2000:]}"
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()}


def test_non_finite_cell_is_an_error_not_a_crash(crash_cases):
    assert crash_cases["nan_cell"].startswith("ValueError the cell has non-finite entries [[nan")
    assert crash_cases["inf_cell"].startswith("ValueError the cell has non-finite entries")
    assert crash_cases["huge_cell"].startswith("ValueError the cell [[1e+300")


def test_far_atom_and_wide_slab_do_not_crash(crash_cases):
    assert crash_cases["far_atom"] == "OK"
    assert crash_cases["wide_slab"] == "OK"


@pytest.mark.parametrize("case", ["far_atom", "wide_slab"])
def test_fallback_neighbour_list_is_exact(case):
    """Where vesin would crash, the graph comes from ASE's neighbour list: the same pairs."""
    if case == "far_atom":
        pos = np.array([[0.0, 0, 0], [1, 1, 1], [2, 2, 2.5], [1e6, 0, 0], [1e6 + 1.0, 0, 0]])
    else:
        rng = np.random.default_rng(0)
        pos = np.column_stack([rng.uniform(0, 2000, (400, 2)), rng.uniform(0, 1.0, 400)])
        pos = np.concatenate([pos, pos[:20] + [1.5, 0.0, 0.0]])
    graph = build_graph(pos, np.zeros((3, 3)), False, 5.0)
    i, j = primitive_neighbor_list("ij", [False] * 3, np.zeros((3, 3)), pos, 5.0)
    assert graph.num_edges > 0
    assert sorted(zip(graph.edge_index[0], graph.edge_index[1])) == sorted(zip(i, j))
