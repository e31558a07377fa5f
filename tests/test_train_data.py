"""Reference data generation (examples/data/generate_si_data.py): labels are right and files reproducible.

Independent references: central finite differences of the reference energy for forces and for stress
(ASE's `calculate_numerical_forces/stress`), the rotation behaviour of vectors and tensors, and the
per-atom energy of the same crystal described by different cells.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "data" / "generate_si_data.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_si_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def voigt_to_matrix(v):
    return np.array([[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]])


def tiny_triclinic(seed=0):
    """8-atom diamond cell, sheared (triclinic), rattled and rotated: nothing lines up with LAMMPS's frame."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=5.45, cubic=True)
    eps = np.array([[0.02, 0.03, -0.01], [0.03, -0.015, 0.02], [-0.01, 0.02, 0.01]])
    atoms.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
    atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
    rot = gen._random_rotation(rng)
    atoms.positions = atoms.positions @ rot.T
    atoms.set_cell(np.asarray(atoms.cell) @ rot.T)
    return atoms


@pytest.fixture(scope="module")
def calc():
    return gen.ReferenceCalculator(potential="snap")


def test_pair_commands_name_the_zuo_snap_files():
    lines = gen.pair_commands("snap")
    assert lines[0] == "pair_style snap"
    assert "Si_Zuo_JPCA2020.snapcoeff" in lines[1] and "Si_Zuo_JPCA2020.snapparam" in lines[1]
    assert lines[1].endswith(" Si")
    with pytest.raises(ValueError, match="unknown reference potential 'eam'"):
        gen.pair_commands("eam")


@pytest.mark.parametrize("potential", ["snap", "sw"])
def test_forces_are_minus_energy_gradient(potential):
    atoms = tiny_triclinic()
    atoms.calc = gen.ReferenceCalculator(potential=potential)
    forces = atoms.get_forces()
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(forces).max() > 0.3  # a non-trivial check
    np.testing.assert_allclose(forces, numeric, atol=2e-5, rtol=0)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)


@pytest.mark.parametrize("potential", ["snap", "sw"])
def test_stress_is_finite_strain_derivative(potential):
    """ASE sign: sigma = (1/V) dE/d(strain), tensile positive; LAMMPS reports the negative pressure."""
    atoms = tiny_triclinic(seed=1)
    atoms.calc = gen.ReferenceCalculator(potential=potential)
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress[3:]).max() > 1e-3  # shear components present
    np.testing.assert_allclose(stress, numeric, atol=2e-7, rtol=0)


def test_stress_sign_under_compression_and_tension(calc):
    """Compressed diamond pushes outwards (negative ASE stress, positive pressure); stretched pulls in."""
    compressed = bulk("Si", "diamond", a=5.30, cubic=True)
    stretched = bulk("Si", "diamond", a=5.60, cubic=True)
    compressed.calc = calc
    s_c = compressed.get_stress()
    stretched.calc = calc
    s_t = stretched.get_stress()
    assert np.all(s_c[:3] < -0.01) and np.all(s_t[:3] > 0.01)
    np.testing.assert_allclose(s_c[3:], 0.0, atol=1e-12)


def test_labels_rotate_with_the_structure(calc):
    atoms = tiny_triclinic(seed=2)
    atoms.calc = calc
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), voigt_to_matrix(atoms.get_stress())
    rot = gen._random_rotation(np.random.default_rng(7))
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rot.T
    rotated.set_cell(np.asarray(atoms.cell) @ rot.T)
    rotated.calc = calc
    assert rotated.get_potential_energy() == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(rotated.get_forces(), f @ rot.T, atol=1e-10)
    np.testing.assert_allclose(voigt_to_matrix(rotated.get_stress()), rot @ s @ rot.T, atol=1e-12)


def test_same_crystal_in_different_cells(calc):
    """2-atom primitive (cell shorter than the cutoff), 8-atom cubic and 64-atom cells: same E/atom and stress."""
    energies, stresses = [], []
    for atoms in (bulk("Si", "diamond", a=5.47), bulk("Si", "diamond", a=5.47, cubic=True),
                  bulk("Si", "diamond", a=5.47, cubic=True).repeat(2)):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
        stresses.append(atoms.get_stress())
        np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-10)
    np.testing.assert_allclose(energies, energies[0], atol=1e-10)
    np.testing.assert_allclose(stresses, stresses[0][None].repeat(3, 0), atol=1e-12)
    # the Zuo SNAP crystal: about -5.42 eV/atom at its lattice constant (~5.475 A)
    assert -5.45 < energies[0] < -5.39


def test_split_is_exact():
    for n in (1, 7, 100, 401):
        counts = gen._split(n, gen.Recipe().fractions)
        assert sum(counts.values()) == n and min(counts.values()) >= 0


def test_generated_file_round_trips_and_is_reproducible(tmp_path, calc):
    import ase.io

    a, b, c = tmp_path / "a.extxyz", tmp_path / "b.extxyz", tmp_path / "c.extxyz"
    assert gen.main(["--out", str(a), "--n-structures", "12", "--seed", "5", "--small"]) == 0
    assert gen.main(["--out", str(b), "--n-structures", "12", "--seed", "5", "--small"]) == 0
    assert gen.main(["--out", str(c), "--n-structures", "12", "--seed", "6", "--small"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()

    frames = ase.io.read(a, ":")
    assert len(frames) == 12
    kinds = {f.info["config_type"].split("_")[0] for f in frames}
    assert {"md", "strain", "rattle"} <= kinds
    for frame in frames:
        energy, forces, stress = frame.get_potential_energy(), frame.get_forces(), frame.get_stress()
        assert forces.shape == (len(frame), 3) and stress.shape == (6,)
        # relabel from the stored positions and cell; extxyz keeps 8 decimals of positions and forces
        fresh = frame.copy()
        fresh.calc = calc
        assert fresh.get_potential_energy() == pytest.approx(energy, abs=1e-6)
        np.testing.assert_allclose(fresh.get_forces(), forces, atol=2e-6)
        np.testing.assert_allclose(fresh.get_stress(), stress, atol=1e-8)
