"""Data-derived model constants on synthetic data with known answers.

shift: energies built exactly as Σ_s n_s μ_s with chosen μ; scale: forces of known RMS;
conv_denominator: lattices whose neighbour counts within the cutoff are known by geometry
(simple cubic: 6 at spacing a < r_c < √2 a; fcc: 12 at a/√2 < r_c < a).
"""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from hienet.train import Trainer
from hienet.train.statistics import average_num_neighbours, fit_energy_shift, force_rms

MU = {"H": -3.1, "O": -4.7, "Si": -5.4}
CUTOFF = 2.5
FORCE_SIZE = 0.37  # every force component is ±FORCE_SIZE → RMS = FORCE_SIZE exactly


def _label(atoms, rng):
    energy = sum(MU[s] for s in atoms.get_chemical_symbols())
    forces = FORCE_SIZE * rng.choice([-1.0, 1.0], size=(len(atoms), 3))
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def _simple_cubic(n, spacing, symbols):
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    return Atoms(symbols, positions=grid, cell=[n * spacing] * 3, pbc=True)


def synthetic_frames(seed=0):
    """Simple-cubic (27 atoms, 6 neighbours each) and fcc (32 atoms, 12 each) cells, random species."""
    rng = np.random.default_rng(seed)
    frames, counts = [], []
    for k in range(6):
        if k % 2 == 0:
            atoms = _simple_cubic(3, 2.0, "H27")
        else:
            atoms = bulk("Cu", "fcc", a=2.9, cubic=True).repeat(2)  # NN 2.05 Å, 2nd shell 2.9 Å
        atoms.set_chemical_symbols(rng.choice(list(MU), size=len(atoms)).tolist())
        frames.append(_label(atoms, rng))
        counts.append(6 if k % 2 == 0 else 12)
    total_atoms = sum(len(a) for a in frames)
    expected_neighbours = sum(c * len(a) for c, a in zip(counts, frames)) / total_atoms
    return frames, expected_neighbours


def test_fit_energy_shift_recovers_known_species_energies():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 20, size=(12, 4))
    counts[:, 3] = 0  # a species that never occurs gets 0
    mu = np.array([-3.1, -4.7, -5.4, 123.0])
    energies = counts @ mu
    np.testing.assert_allclose(fit_energy_shift(counts, energies), [-3.1, -4.7, -5.4, 0.0], atol=1e-10)


def test_force_rms_and_neighbours_formulas():
    forces = np.full((10, 3), FORCE_SIZE) * np.sign(np.random.default_rng(0).normal(size=(10, 3)))
    assert force_rms(forces) == pytest.approx(FORCE_SIZE, rel=1e-14)
    assert average_num_neighbours([60, 24], [10, 2]) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="empty"):
        force_rms(np.zeros((0, 3)))


def test_trainer_fits_shift_scale_and_denominator(tmp_path):
    import ase.io

    frames, expected_neighbours = synthetic_frames()
    data = tmp_path / "synthetic.extxyz"
    ase.io.write(data, frames, format="extxyz")
    trainer = Trainer({
        "data": {"train": str(data), "validation_fraction": 0.0},
        "model": {"preset": "tiny", "cutoff": CUTOFF},
        "output_dir": str(tmp_path / "run"), "progress": False, "dtype": "float64",
    }, log=lambda msg: None)
    model = trainer.model
    assert model.species == ["H", "O", "Si"]  # ordered by atomic number
    np.testing.assert_allclose(model.config["shift"], [MU["H"], MU["O"], MU["Si"]], atol=1e-9)
    np.testing.assert_allclose(model.shift.numpy(), [MU["H"], MU["O"], MU["Si"]], atol=1e-9)
    np.testing.assert_allclose(model.config["scale"], FORCE_SIZE, rtol=1e-12)
    np.testing.assert_allclose(model.scale.numpy(), FORCE_SIZE, rtol=1e-12)
    assert expected_neighbours == pytest.approx(9.1, abs=0.2)  # the geometry mixes 6 and 12
    assert model.config["conv_denominator"] == pytest.approx(expected_neighbours, rel=1e-12)
    for block in model.interactions:
        assert float(block.denominator) == pytest.approx(expected_neighbours, rel=1e-12)


def test_statistics_use_the_training_split_only(tmp_path):
    """A validation structure with absurd labels must not move the fitted constants."""
    import ase.io

    frames, _ = synthetic_frames(seed=2)
    data = tmp_path / "synthetic.extxyz"
    ase.io.write(data, frames, format="extxyz")
    config = {"data": {"train": str(data), "validation_fraction": 0.34},
              "model": {"preset": "tiny", "cutoff": CUTOFF}, "output_dir": str(tmp_path / "run"),
              "progress": False, "dtype": "float64"}
    trainer = Trainer(config, log=lambda msg: None)
    assert len(trainer.val_set) == 2 and len(trainer.train_set) == 4
    # poison the validation frames and refit: identical constants
    for i in trainer.validation_indices:
        frames[i].calc.results["energy"] += 1000.0
        frames[i].calc.results["forces"] *= 50.0
    ase.io.write(data, frames, format="extxyz")
    poisoned = Trainer(config, log=lambda msg: None)
    for key in ("shift", "scale", "conv_denominator"):
        np.testing.assert_allclose(poisoned.model.config[key], trainer.model.config[key], rtol=1e-12)
    np.testing.assert_allclose(trainer.model.config["shift"], [MU["H"], MU["O"], MU["Si"]], atol=1e-9)


def test_explicit_statistics_override_the_fit(tmp_path):
    import ase.io

    frames, _ = synthetic_frames()
    data = tmp_path / "synthetic.extxyz"
    ase.io.write(data, frames, format="extxyz")
    trainer = Trainer({
        "data": {"train": str(data)}, "model": {"preset": "tiny", "cutoff": CUTOFF},
        "statistics": {"shift": [-1.0, -2.0, -3.0], "scale": 2.0, "conv_denominator": 7.5},
        "output_dir": str(tmp_path / "run"), "progress": False,
    }, log=lambda msg: None)
    assert trainer.model.config["shift"] == [-1.0, -2.0, -3.0]
    assert trainer.model.config["scale"] == [2.0, 2.0, 2.0]
    assert float(trainer.model.interactions[0].denominator) == 7.5
