"""Labelled structures → graphs → batches.

Each structure becomes a dict of CPU tensors (float64) with the keys of `hienet.graph.keys`
plus the training-only keys below; `collate` joins several into one disjoint graph (node
indices offset, `batch` assigning nodes to structures), cast to the model dtype and device.

Labels follow ASE conventions: energy (eV), forces (eV/Å), stress (eV/Å^3, tensile positive).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..graph import graph_of_atoms
from ..graph import keys as K

# Training-only keys (reference labels use the model output names of hienet.graph.keys).
HAS_STRESS = "has_stress"  # (B,) bool: the structure carries a stress label (and has a volume)
INDEX = "index"  # (B,) int64: position of the structure in its dataset

_FLOAT_KEYS = (K.EDGE_VEC, K.ENERGY, K.FORCES, K.STRESS, K.VOLUME)


def _stress_matrix(value, source: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if value.shape == (6,):
        xx, yy, zz, yz, xz, xy = value
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if value.size == 9:
        return value.reshape(3, 3)
    raise ValueError(f"{source}: stress must have 6 (Voigt) or 9 values, got shape {value.shape}")


def labels_of(atoms, source: str, energy_key=None, forces_key=None, stress_key=None):
    """(energy, forces (N, 3), stress (3, 3) or None) of one labelled structure."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    if energy_key is not None:
        energy = atoms.info.get(energy_key)
    else:
        energy = results.get("energy", results.get("free_energy"))
    if energy is None:
        where = f"info[{energy_key!r}]" if energy_key else "an energy (extxyz energy=...)"
        raise ValueError(f"{source} has no {where}")
    forces = atoms.arrays.get(forces_key) if forces_key is not None else results.get("forces")
    if forces is None:
        where = f"arrays[{forces_key!r}]" if forces_key else "forces"
        raise ValueError(f"{source} has no {where}")
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"{source}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    stress = atoms.info.get(stress_key) if stress_key is not None else results.get("stress")
    if stress is not None:
        stress = _stress_matrix(stress, source)
    check_finite_labels(atoms, source, energy, forces, stress)
    return float(energy), forces, stress


def check_finite_labels(atoms, source: str, energy, forces: np.ndarray, stress) -> None:
    """ValueError naming the structure and the field (and the atom) of a NaN or inf label:
    one would make every loss NaN and the trained weights NaN."""
    try:
        energy = float(energy)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: the energy label {energy!r} is not a number") from None
    if not np.isfinite(energy):
        raise ValueError(f"{source}: the energy label is {energy}")
    bad = ~np.isfinite(forces).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{source}: the force label of atom {i} ({atoms[i].symbol}) is "
                         f"{forces[i].tolist()} ({int(bad.sum())} atom(s) with non-finite forces)")
    if stress is not None and not np.isfinite(stress).all():
        raise ValueError(f"{source}: the stress label is not finite {stress.tolist()}")


def describe(atoms, index: int, source: str) -> str:
    """'FILE structure 12 (config_type=liquid)': the index and short string info entries."""
    tags = [f"{k}={v}" for k, v in atoms.info.items() if isinstance(v, str) and len(v) <= 40][:3]
    return f"{source} structure {index}" + (f" ({', '.join(tags)})" if tags else "")


def read_structures(path, index=":"):
    """All frames of a file readable by `ase.io.read`."""
    import ase.io
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"training data file not found: {path}")
    frames = ase.io.read(path, index=index)
    return frames if isinstance(frames, list) else [frames]


def structure_to_graph(atoms, species: Sequence[str], cutoff: float, source: str,
                       energy_key=None, forces_key=None, stress_key=None) -> Dict[str, torch.Tensor]:
    from ..ase_convert import species_indices

    energy, forces, stress = labels_of(atoms, source, energy_key, forces_key, stress_key)
    try:
        graph = graph_of_atoms(atoms, cutoff)
    except ValueError as err:  # non-finite geometry, overlapping atoms: name the structure
        raise ValueError(f"{source}: {err}") from None
    volume = abs(float(atoms.cell.volume)) if atoms.cell.rank == 3 else 0.0
    has_stress = stress is not None and volume > 0.0
    return {
        K.SPECIES: torch.as_tensor(species_indices(atoms.get_chemical_symbols(), list(species),
                                                   f"the model's species (needed by {source})")),
        K.EDGE_INDEX: torch.as_tensor(graph.edge_index, dtype=torch.long),
        K.EDGE_VEC: torch.as_tensor(graph.edge_vec, dtype=torch.float64),
        K.ENERGY: torch.tensor(energy, dtype=torch.float64),
        K.FORCES: torch.as_tensor(forces, dtype=torch.float64),
        K.STRESS: torch.as_tensor(stress if has_stress else np.zeros((3, 3)), dtype=torch.float64),
        HAS_STRESS: torch.tensor(has_stress),
        K.VOLUME: torch.tensor(volume if volume > 0 else 1.0, dtype=torch.float64),
    }


class GraphDataset:
    """Graphs of labelled structures for one model (species order and cutoff), all built up
    front and held in memory (`hienet.train.streaming.StreamedGraphDataset` reads and builds
    them on demand instead)."""

    def __init__(self, frames: List, species: Sequence[str], cutoff: float, source: str = "data",
                 energy_key=None, forces_key=None, stress_key=None):
        self.species = list(species)
        self.cutoff = float(cutoff)
        # names for messages: "FILE structure 12 (config_type=liquid)"
        self.names = [describe(atoms, i, source) for i, atoms in enumerate(frames)]
        self.items = [
            structure_to_graph(atoms, self.species, self.cutoff, name, energy_key, forces_key, stress_key)
            for name, atoms in zip(self.names, frames)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        return {**self.items[i], INDEX: torch.tensor(i)}

    def name(self, i: int) -> str:
        return self.names[i]

    def subset(self, indices: Sequence[int]) -> "GraphDataset":
        out = object.__new__(GraphDataset)
        out.species, out.cutoff = self.species, self.cutoff
        out.items = [self.items[i] for i in indices]
        out.names = [self.names[i] for i in indices]
        return out

    # summaries used by hienet.train.statistics
    def species_counts(self) -> np.ndarray:
        """(structures, species) number of atoms of each species."""
        n = len(self.species)
        return np.stack([np.bincount(item[K.SPECIES].numpy(), minlength=n) for item in self.items])

    def energies(self) -> np.ndarray:
        return np.array([float(item[K.ENERGY]) for item in self.items])

    def num_atoms(self) -> np.ndarray:
        return np.array([item[K.SPECIES].shape[0] for item in self.items])

    def num_edges(self) -> np.ndarray:
        return np.array([item[K.EDGE_INDEX].shape[1] for item in self.items])

    def all_forces(self) -> np.ndarray:
        return np.concatenate([item[K.FORCES].numpy() for item in self.items]).reshape(-1, 3)


def summary_of(item: Dict[str, torch.Tensor], num_species: int):
    """What the model constants need of one structure graph (hienet.train.statistics.Summary)."""
    from .statistics import Summary

    forces = item[K.FORCES].numpy()
    return Summary(counts=np.bincount(item[K.SPECIES].numpy(), minlength=num_species),
                   energy=float(item[K.ENERGY]), force_sq=float(np.sum(forces**2)), force_n=forces.size,
                   num_edges=int(item[K.EDGE_INDEX].shape[1]))


def collate(items: Sequence[Dict[str, torch.Tensor]], dtype: torch.dtype = torch.float32,
            device=None, indices: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
    """One disjoint-union graph of `items` (node indices offset), cast to dtype/device."""
    num_atoms = torch.tensor([item[K.SPECIES].shape[0] for item in items], dtype=torch.long)
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    batch = {
        K.SPECIES: torch.cat([item[K.SPECIES] for item in items]),
        K.EDGE_INDEX: torch.cat([item[K.EDGE_INDEX] + off for item, off in zip(items, offsets)], dim=1),
        K.EDGE_VEC: torch.cat([item[K.EDGE_VEC] for item in items]),
        K.ENERGY: torch.stack([item[K.ENERGY] for item in items]),
        K.FORCES: torch.cat([item[K.FORCES] for item in items]),
        K.STRESS: torch.stack([item[K.STRESS] for item in items]),
        HAS_STRESS: torch.stack([item[HAS_STRESS] for item in items]),
        K.VOLUME: torch.stack([item[K.VOLUME] for item in items]),
        K.NUM_ATOMS: num_atoms,
        K.BATCH: torch.repeat_interleave(torch.arange(len(items)), num_atoms),
    }
    if indices is not None:
        batch[INDEX] = torch.as_tensor(list(indices), dtype=torch.long)
    elif all(INDEX in item for item in items):
        batch[INDEX] = torch.stack([item[INDEX] for item in items])
    return {
        k: (v.to(device=device, dtype=dtype) if k in _FLOAT_KEYS else v.to(device=device))
        for k, v in batch.items()
    }


def collate_or_none(items: Sequence[Dict[str, torch.Tensor]], dtype: torch.dtype):
    """`collate` on the CPU (in DataLoader workers); None for a rank's empty part of a batch."""
    return collate(items, dtype=dtype) if len(items) else None


def to_device(batch: Dict[str, torch.Tensor], device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def split_indices(n: int, validation_fraction: float, seed: int):
    """Seeded (train, validation) index lists; at least one validation structure if fraction > 0."""
    if validation_fraction <= 0 or n < 2:
        return list(range(n)), []
    n_val = min(n - 1, max(1, int(round(validation_fraction * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())
