"""Data-derived model constants: per-species energy shift, energy scale, convolution denominator.

    shift  μ = argmin Σ_structures (E − Σ_s n_s μ_s)²          (least squares; absent species → 0)
    scale  = sqrt(mean over all force components of F²)        (force RMS, eV/Å)
    conv_denominator = (number of directed edges) / (number of atoms)   (average neighbour count
                       within the model cutoff, periodic images included)

The atomic energy of the model is E_i = scale · ε_i + shift[s_i], so with the network output ε
of unit size the model starts at the right energy reference and force magnitude. All three are
computed on the training split only.
"""
from typing import Sequence

import numpy as np


def fit_energy_shift(counts: np.ndarray, energies: Sequence[float]) -> np.ndarray:
    """Per-species energies μ (eV) minimising Σ (E − counts @ μ)²; minimum-norm solution.

    Species that never occur get μ = 0. With collinear compositions (e.g. only SiO2) the split
    between species is not determined by the data; the minimum-norm solution is returned.
    """
    counts = np.asarray(counts, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != energies.shape[0]:
        raise ValueError(f"counts {counts.shape} and energies {energies.shape} do not match")
    if counts.shape[0] == 0:
        raise ValueError("cannot fit energy shifts on an empty data set")
    mu, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    mu[counts.sum(axis=0) == 0] = 0.0
    return mu


def force_rms(forces: np.ndarray) -> float:
    """sqrt(mean(F_ic²)) over all atoms and Cartesian components."""
    forces = np.asarray(forces, dtype=np.float64)
    if forces.size == 0:
        raise ValueError("cannot compute the force RMS of an empty data set")
    return float(np.sqrt(np.mean(forces**2)))


def average_num_neighbours(num_edges: Sequence[int], num_atoms: Sequence[int]) -> float:
    """Directed edges per atom over the whole data set."""
    total_atoms = int(np.sum(num_atoms))
    if total_atoms == 0:
        raise ValueError("cannot compute the average neighbour count of an empty data set")
    return float(np.sum(num_edges)) / total_atoms


def dataset_statistics(dataset) -> dict:
    """{'shift': list per species, 'scale': float, 'conv_denominator': float} of a GraphDataset."""
    return {
        "shift": fit_energy_shift(dataset.species_counts(), dataset.energies()).tolist(),
        "scale": force_rms(dataset.all_forces()),
        "conv_denominator": average_num_neighbours(dataset.num_edges(), dataset.num_atoms()),
    }
