"""Periodic radius graph of an ASE structure, built with vesin.

Edges are directed, (i, j) and (j, i) both appear; an atom neighbours its own periodic
images (i == j with a non-zero shift) when the cell is shorter than the cutoff. Pairs are
kept when their distance is below the cutoff.
"""
from dataclasses import dataclass

import numpy as np
from vesin import NeighborList


@dataclass
class Graph:
    """Neighbour graph of one structure (numpy arrays, float64)."""

    edge_index: np.ndarray  # (2, E) int64, [centre i, neighbour j]
    edge_shift: np.ndarray  # (E, 3) float64, integer cell shifts of j
    edge_vec: np.ndarray  # (E, 3) float64, x_j - x_i + shift @ cell

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]


def build_graph(positions, cell, pbc, cutoff: float) -> Graph:
    """Radius graph of atoms at `positions` (N, 3) in `cell` (3, 3) with periodicity `pbc`."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    for axis in range(3):
        if pbc[axis] and np.linalg.norm(cell[axis]) == 0.0:
            raise ValueError(f"periodic along axis {axis} but cell vector {axis} is zero")
    if len(positions) == 0:
        empty = np.zeros((0, 3))
        return Graph(np.zeros((2, 0), dtype=np.int64), empty, empty.copy())
    if not pbc.any():
        cell = np.zeros((3, 3))  # vesin ignores the box then; it may be degenerate
    i, j, shift = NeighborList(cutoff=cutoff, full_list=True).compute(
        positions, cell, pbc.tolist(), quantities="ijS"
    )
    edge_index = np.stack([i, j]).astype(np.int64)
    shift = shift.astype(np.float64)
    edge_vec = positions[j] - positions[i] + shift @ cell
    return Graph(edge_index, shift, edge_vec)


def graph_of_atoms(atoms, cutoff: float) -> Graph:
    """`build_graph` for an `ase.Atoms`."""
    return build_graph(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
