"""Physical invariances and derivative consistency of the model (independent references)."""
import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from hienet.calculator import HIENetCalculator

from conftest import make_model


@pytest.fixture(scope="module")
def smooth_calc():
    return HIENetCalculator(make_model("small", seed=1), dtype="float64")


@pytest.fixture(scope="module")
def parity_calc():
    return HIENetCalculator(make_model("small", seed=2, parity=True), dtype="float64")


def results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)


def transformed(atoms, matrix):
    new = atoms.copy()
    new.positions = atoms.positions @ matrix.T
    new.cell = atoms.cell.array @ matrix.T
    return new


@pytest.mark.parametrize("calc_name", ["smooth_calc", "parity_calc"])
@pytest.mark.parametrize("index", [0, 2, 6, 11])
def test_rotation(structures, request, calc_name, index):
    calc = request.getfixturevalue(calc_name)
    atoms = structures[index]
    R = Rotation.random(random_state=7).as_matrix()
    e0, f0, s0 = results(calc, atoms)
    e1, f1, s1 = results(calc, transformed(atoms, R))
    assert abs(e1 - e0) <= 1e-10
    np.testing.assert_allclose(f1, f0 @ R.T, atol=1e-10)
    np.testing.assert_allclose(s1, R @ s0 @ R.T, atol=1e-10)


def chiral_molecule(mirror=False):
    positions = np.array(
        [[0, 0, 0], [0.63, 0.63, 0.63], [-0.7, -0.7, 0.7], [-0.9, 0.9, -0.9], [1.1, -1.1, -1.1]]
    )
    if mirror:
        positions[:, 0] *= -1
    return Atoms("CHOClSi", positions=positions * 1.3, cell=[12, 12, 12], pbc=False)


def test_reflection_parity_true_is_exactly_mirror_invariant(parity_calc, structures):
    M = np.diag([-1.0, 1.0, 1.0])
    for atoms in [chiral_molecule(), structures[2], structures[10]]:
        e0, f0, s0 = results(parity_calc, atoms)
        e1, f1, s1 = results(parity_calc, transformed(atoms, M))
        assert abs(e1 - e0) <= 1e-10
        np.testing.assert_allclose(f1, f0 @ M.T, atol=1e-10)
        np.testing.assert_allclose(s1, M @ s0 @ M, atol=1e-10)


def test_reflection_parity_false_breaks_mirror_symmetry(official_small):
    """The official (parity-blind) model tells enantiomers apart, at the 1e-10 eV level (4.6e-10)."""
    calc = HIENetCalculator(official_small)
    e_left, _, _ = results(calc, chiral_molecule())
    e_right, _, _ = results(calc, chiral_molecule(mirror=True))
    assert 1e-11 < abs(e_left - e_right) < 1e-8


def test_translation_and_permutation(smooth_calc, structures):
    atoms = structures[10]
    e0, f0, s0 = results(smooth_calc, atoms)
    moved = atoms.copy()
    moved.positions += [1.7, -3.1, 0.4]
    e1, f1, s1 = results(smooth_calc, moved)
    assert abs(e1 - e0) < 1e-10
    np.testing.assert_allclose(f1, f0, atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(atoms))
    e2, f2, s2 = results(smooth_calc, atoms[perm])
    assert abs(e2 - e0) < 1e-10
    np.testing.assert_allclose(f2, f0[perm], atol=1e-10)
    np.testing.assert_allclose(s2, s0, atol=1e-10)


@pytest.mark.parametrize("index", [0, 2, 4, 6, 10])
def test_total_force_vanishes(smooth_calc, structures, index):
    _, forces, _ = results(smooth_calc, structures[index])
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("index", [2, 6, 11])
def test_forces_are_minus_energy_gradient(smooth_calc, structures, index):
    atoms = structures[index]
    _, forces, _ = results(smooth_calc, atoms)
    h = 1e-4
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            numeric[a, c] = -(results(smooth_calc, plus)[0] - results(smooth_calc, minus)[0]) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7)
    assert np.abs(forces).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("index", [2, 11])
def test_stress_is_strain_derivative(smooth_calc, structures, index):
    atoms = structures[index]
    _, _, stress = results(smooth_calc, atoms)
    h, volume = 1e-5, atoms.get_volume()
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h / 2 if a != b else h
            plus = transformed(atoms, np.eye(3) + eps)
            minus = transformed(atoms, np.eye(3) - eps)
            numeric[a, b] = (results(smooth_calc, plus)[0] - results(smooth_calc, minus)[0]) / (2 * h * volume)
    np.testing.assert_allclose(stress, numeric, atol=1e-9)
    np.testing.assert_allclose(stress, stress.T, atol=1e-14)


def dimer(distance):
    return Atoms("FeO", positions=[[5, 5, 5], [5 + distance, 5, 5]], cell=[15, 15, 15], pbc=False)


def test_smooth_variant_is_continuous_at_cutoff(smooth_calc):
    cutoff = smooth_calc.cutoff
    e_in, f_in, _ = results(smooth_calc, dimer(cutoff - 1e-6))
    e_out, f_out, _ = results(smooth_calc, dimer(cutoff + 1e-6))
    assert abs(e_in - e_out) < 1e-12
    np.testing.assert_allclose(f_in, f_out, atol=1e-12)
    # and the energy does vary with distance inside the cutoff
    assert abs(results(smooth_calc, dimer(cutoff - 1.0))[0] - e_out) > 1e-4


def test_official_variant_jumps_at_cutoff(official_small):
    """Recorded behaviour of the official model: ~0.021 eV step for the Fe–O dimer at 5 Å."""
    calc = HIENetCalculator(official_small)
    e_in = results(calc, dimer(4.999999))[0]
    e_out = results(calc, dimer(5.000001))[0]
    assert e_in == pytest.approx(-13.382781967, abs=1e-8)
    assert e_out == pytest.approx(-13.403877840, abs=1e-8)


def test_supercell_is_extensive(smooth_calc, structures):
    atoms = structures[2]
    e1, f1, s1 = results(smooth_calc, atoms)
    big = atoms.repeat((2, 2, 2))
    e8, f8, s8 = results(smooth_calc, big)
    assert e8 == pytest.approx(8 * e1, abs=1e-9)
    np.testing.assert_allclose(f8, np.tile(f1, (8, 1)), atol=1e-10)
    np.testing.assert_allclose(s8, s1, atol=1e-12)


def test_isolated_atom(smooth_calc):
    energies = []
    for cell, pbc in [([20, 20, 20], True), ([11, 12, 13], True), ([0, 0, 0], False), ([30, 30, 30], False)]:
        atoms = Atoms("Cu", positions=[[1.0, 2.0, 3.0]], cell=cell, pbc=pbc)
        atoms.calc = smooth_calc
        energies.append(atoms.get_potential_energy())
        np.testing.assert_array_equal(atoms.get_forces(), 0.0)
        if atoms.cell.volume > 0:
            np.testing.assert_array_equal(atoms.get_stress(), 0.0)
    assert max(energies) - min(energies) == 0.0


def test_scripted_model_matches_eager(structures):
    from e3nn.util.jit import script

    from hienet.model.forces import evaluate
    from hienet.graph import graph_of_atoms

    model = make_model("small", seed=3)
    scripted = script(model)
    atoms = structures[10]
    graph = graph_of_atoms(atoms, model.cutoff)
    species = torch.tensor([model.species.index(s) for s in atoms.get_chemical_symbols()])
    args = species, torch.from_numpy(graph.edge_index), torch.from_numpy(graph.edge_vec)
    eager, jit = evaluate(model, *args), evaluate(scripted, *args)
    for key in ("atom_energy", "forces", "virial"):
        torch.testing.assert_close(jit[key], eager[key], atol=1e-12, rtol=0)


def test_float64_model_keeps_config_constants_exactly():
    model = make_model("tiny", shift=[-5.123456789012345] * 8, conv_denominator=27.123456789012345)
    assert model.shift[0].item() == -5.123456789012345
    assert model.interactions[0].denominator.item() == 27.123456789012345


def test_graph_keeps_pairs_strictly_inside_cutoff():
    from hienet.graph import graph_of_atoms

    assert graph_of_atoms(dimer(5.0 - 1e-9), 5.0).num_edges == 2
    assert graph_of_atoms(dimer(5.0), 5.0).num_edges == 0
    # a cubic cell of edge exactly the cutoff: images at 5.0 are out, the 6 at 5·√2 too
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[5.0, 5.0, 5.0], pbc=True)
    assert graph_of_atoms(atoms, 5.0).num_edges == 0
    atoms.cell = [4.99, 4.99, 4.99]
    assert graph_of_atoms(atoms, 5.0).num_edges == 6
