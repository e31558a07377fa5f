"""Data-derived model constants: per-species energy shift, energy scale, convolution denominator.

    shift  μ = argmin Σ_structures (E − Σ_s n_s μ_s)²          (least squares; absent species → 0)
    scale  = sqrt(mean over all force components of F²)        (force RMS, eV/Å)
    conv_denominator = (number of directed edges) / (number of atoms)   (average neighbour count
                       within the model cutoff, periodic images included)

The atomic energy of the model is E_i = scale · ε_i + shift[s_i], so with the network output ε
of unit size the model starts at the right energy reference and force magnitude. All three are
computed on the training split only.

Data sets larger than memory are summarised in one streaming pass: structures are grouped into
fixed chunks of consecutive positions (`CHUNK`); each chunk gives the R factor of the QR
decomposition of its rows [n_s | E] and its sums; the chunks are combined in chunk order
(R = qr([R; R_k])), which is the least-squares problem of all rows without holding them. The
chunks, not the ranks or workers that computed them, fix the arithmetic: the constants are the
same bits on one process or many, from memory or streamed.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, Sequence

import numpy as np

CHUNK = 4096  # structures per chunk of the streaming pass


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


# ----------------------------------------------------------------------------------------------
# streaming pass
# ----------------------------------------------------------------------------------------------
@dataclass
class Summary:
    """What the constants need of one structure (`energy` is the residual for a shift refit)."""

    counts: np.ndarray  # (species,) atoms of each species
    energy: float
    force_sq: float = 0.0  # Σ F_ic²
    force_n: int = 0  # number of force components
    num_edges: int = 0


@dataclass
class ChunkResult:
    r: np.ndarray  # R factor of the chunk's rows [counts | energy]
    force_sq: float
    force_n: int
    num_edges: int
    num_atoms: int
    occurs: np.ndarray  # (species,) bool: the species occurs in the chunk


class ChunkedStatistics:
    """Collects Summary rows by position; `results()` gives one ChunkResult per chunk touched."""

    def __init__(self, num_species: int):
        self.num_species = num_species
        self.rows: Dict[int, Dict[int, Summary]] = {}

    def add(self, position: int, summary: Summary) -> None:
        self.rows.setdefault(position // CHUNK, {})[position] = summary

    def results(self) -> Dict[int, ChunkResult]:
        out = {}
        for chunk, rows in self.rows.items():
            ordered = [rows[p] for p in sorted(rows)]
            counts = np.array([s.counts for s in ordered], dtype=np.float64).reshape(len(ordered), self.num_species)
            a = np.column_stack([counts, [s.energy for s in ordered]])
            out[chunk] = ChunkResult(
                r=np.linalg.qr(a, mode="r"),
                force_sq=float(np.sum([s.force_sq for s in ordered])),
                force_n=int(sum(s.force_n for s in ordered)),
                num_edges=int(sum(s.num_edges for s in ordered)),
                num_atoms=int(counts.sum()),
                occurs=counts.sum(axis=0) > 0,
            )
        return out


def combine(results: Iterable[Dict[int, ChunkResult]], num_species: int, expected_chunks: int,
            shift_only: bool = False) -> dict:
    """{'shift', 'scale', 'conv_denominator'} from the chunk results of every rank ({'shift'}
    alone for a refit of the shift to residual energies)."""
    merged: Dict[int, ChunkResult] = {}
    for part in results:
        merged.update(part)
    if sorted(merged) != list(range(expected_chunks)):
        raise RuntimeError(f"statistics pass incomplete: chunks {sorted(merged)} of {expected_chunks}")
    if not merged:
        raise ValueError("cannot compute statistics of an empty data set")
    r = None
    force_sq, force_n, edges, atoms = 0.0, 0, 0, 0
    occurs = np.zeros(num_species, dtype=bool)
    for k in range(expected_chunks):
        c = merged[k]
        r = c.r if r is None else np.linalg.qr(np.vstack([r, c.r]), mode="r")
        force_sq += c.force_sq
        force_n += c.force_n
        edges += c.num_edges
        atoms += c.num_atoms
        occurs |= c.occurs
    # [[R, z], [0, ρ]]: min |A μ − E| = min |R μ − z|, same null space, so the same minimum-norm μ
    mu, *_ = np.linalg.lstsq(r[:, :num_species], r[:, num_species], rcond=None)
    mu[~occurs] = 0.0
    if shift_only:
        return {"shift": mu.tolist()}
    if force_n == 0:
        raise ValueError("cannot compute the force RMS of an empty data set")
    if atoms == 0:
        raise ValueError("cannot compute the average neighbour count of an empty data set")
    return {"shift": mu.tolist(), "scale": float(np.sqrt(force_sq / force_n)),
            "conv_denominator": float(edges) / atoms}


def num_chunks(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


def chunk_positions(n: int, rank: int, world_size: int):
    """Positions of the chunks this rank summarises (chunks k ≡ rank mod world_size)."""
    for k in range(rank, num_chunks(n), world_size):
        yield from range(k * CHUNK, min(n, (k + 1) * CHUNK))


def dataset_statistics(dataset) -> dict:
    """{'shift': list per species, 'scale': float, 'conv_denominator': float} of a data set
    (one process; the trainer runs the same pass sharded over ranks and workers)."""
    from .dataset import summary_of

    if len(dataset) == 0:
        raise ValueError("cannot compute statistics of an empty data set")
    acc = ChunkedStatistics(len(dataset.species))
    for i in range(len(dataset)):
        acc.add(i, summary_of(dataset[i], len(dataset.species)))
    return combine([acc.results()], len(dataset.species), num_chunks(len(dataset)))
