"""Conversions at the ASE boundary, shared by the calculator, `hienet.deploy` and the trainer.

* `species_indices`: chemical symbols → the model's species indices (naming any element it lacks);
* `results_from_outputs`: model outputs → ASE results (double precision, ASE stress sign and
  Voigt order), refusing non-finite values with the first offending atom named.
"""
from typing import List, Sequence

import numpy as np
from ase.calculators.calculator import CalculationFailed

from .graph import keys as K


def species_indices(symbols: List[str], model_species: List[str], source: str = "the model"):
    """Map chemical symbols to the model's species indices, naming any element it lacks."""
    index = {s: i for i, s in enumerate(model_species)}
    missing = sorted(set(symbols) - set(index))
    if missing:
        raise ValueError(
            f"element(s) {', '.join(missing)} not in {source}; it knows {', '.join(model_species)}"
        )
    return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))


def results_from_outputs(out, volume: float, symbols: Sequence[str] = (), source: str = "the model") -> dict:
    """ASE results from model outputs (double precision, Voigt stress when V > 0).

    Raises ASE's CalculationFailed (a RuntimeError) naming `source` (the model) and the first
    atom (index and symbol) whose energy or force is not finite.
    """
    energies = out[K.ATOM_ENERGY].detach().double().cpu().numpy()
    forces = out[K.FORCES].detach().double().cpu().numpy()
    check_finite(energies, forces, symbols, source)
    energy = float(energies.sum())
    results = {
        "energy": energy,
        "free_energy": energy,
        "energies": energies,
        "forces": forces,
    }
    if volume > 0:
        sigma = -out[K.VIRIAL][0].detach().double().cpu().numpy() / volume
        if not np.isfinite(sigma).all():
            raise CalculationFailed(f"{source} returned a non-finite stress {sigma.tolist()}")
        results["stress"] = voigt(0.5 * (sigma + sigma.T))
    return results


def check_finite(energies: np.ndarray, forces: np.ndarray, symbols: Sequence[str] = (),
                 source: str = "the model") -> None:
    """CalculationFailed naming the first atom with a non-finite energy or force."""
    bad = ~np.isfinite(energies) | ~np.isfinite(forces).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        name = f"atom {i} ({symbols[i]})" if len(symbols) > i else f"atom {i}"
        raise CalculationFailed(
            f"{source} returned a non-finite energy or force for {name}: energy {energies[i]}, "
            f"force {forces[i].tolist()}"
        )


def voigt(tensor: np.ndarray) -> np.ndarray:
    """3×3 → ASE Voigt order [xx, yy, zz, yz, xz, xy]."""
    return np.array(
        [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[1, 2], tensor[0, 2], tensor[0, 1]]
    )
