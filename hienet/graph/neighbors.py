"""Periodic radius graph of an ASE structure, built with vesin.

Edges are directed, (i, j) and (j, i) both appear; an atom neighbours its own periodic
images (i == j with a non-zero shift) when the cell is shorter than the cutoff. Pairs are
kept when their distance is below the cutoff.

The structure is validated first, because the model turns bad geometry into NaN and vesin
turns some of it into a crash of the whole process (SIGFPE): positions and cell must be
finite, the periodic cell no thinner than `keys.MIN_ATOM_DISTANCE` (so no atom overlaps its
own images), and no two atoms closer than that. Each error names the atoms
(index and symbol) or the cell vector and the distance.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from vesin import NeighborList

from .keys import MIN_ATOM_DISTANCE


@dataclass
class Graph:
    """Neighbour graph of one structure (numpy arrays, float64)."""

    edge_index: np.ndarray  # (2, E) int64, [centre i, neighbour j]
    edge_shift: np.ndarray  # (E, 3) float64, integer cell shifts of j
    edge_vec: np.ndarray  # (E, 3) float64, x_j - x_i + shift @ cell

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]


def _atom(i: int, symbols: Optional[Sequence[str]]) -> str:
    return f"atom {i} ({symbols[i]})" if symbols is not None and len(symbols) > i else f"atom {i}"


def _search_box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The cell with non-periodic vectors replaced by unit vectors normal to the periodic ones
    (as vesin does), so that the thickness of the periodic directions is defined."""
    box = np.array(cell, dtype=np.float64)
    periodic = np.flatnonzero(pbc)
    if len(periodic) == 0:
        return np.eye(3)
    if len(periodic) == 1:
        p = periodic[0]
        a = box[p]
        b = np.array([0.0, 1.0, 0.0])
        if abs(np.dot(a / np.linalg.norm(a), b)) > 0.9:
            b = np.array([0.0, 0.0, 1.0])
        c = np.cross(a, b)
        c /= np.linalg.norm(c)
        b = np.cross(c, a)
        b /= np.linalg.norm(b)
        box[(p + 1) % 3], box[(p + 2) % 3] = b, c
    elif len(periodic) == 2:
        c = np.cross(box[periodic[0]], box[periodic[1]])
        norm = np.linalg.norm(c)
        box[3 - periodic.sum()] = c / norm if norm > 0 else 0.0
    return box


def _thickness(box: np.ndarray) -> np.ndarray:
    """Distance between opposite faces of the parallelepiped `box`, per cell vector."""
    with np.errstate(all="ignore"):
        out = np.empty(3)
        for k in range(3):
            normal = np.cross(box[(k + 1) % 3], box[(k + 2) % 3])
            norm = np.linalg.norm(normal)
            out[k] = abs(np.dot(normal, box[k])) / norm if norm > 0 else 0.0
    return out


def check_structure(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                    symbols: Optional[Sequence[str]] = None) -> None:
    """ValueError unless positions and the periodic cell are finite and not too thin."""
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{_atom(i, symbols)} has a non-finite position {positions[i].tolist()}")
    if not pbc.any():
        return  # the cell is not used
    if not np.isfinite(cell).all():
        raise ValueError(f"the cell has non-finite entries {cell.tolist()} (periodic along {pbc.tolist()})")
    for axis in np.flatnonzero(pbc):
        if not np.any(cell[axis]):
            raise ValueError(f"periodic along axis {axis} but cell vector {axis} is zero")
    thickness = _thickness(_search_box(cell, pbc))
    if not np.isfinite(thickness).all():
        raise ValueError(f"the cell {cell.tolist()} is too large to handle")
    for axis in np.flatnonzero(pbc):
        if not thickness[axis] >= MIN_ATOM_DISTANCE:
            raise ValueError(
                f"the periodic cell is {thickness[axis]:.3g} Å thin along cell vector {axis} "
                f"(< {MIN_ATOM_DISTANCE} Å; cell {cell.tolist()}): atoms would overlap their "
                "periodic images, or the cell needs reducing (ase.build.niggli_reduce)"
            )


def check_distances(edge_index: np.ndarray, edge_vec: np.ndarray,
                    symbols: Optional[Sequence[str]] = None) -> None:
    """ValueError naming the closest pair of atoms if it is closer than MIN_ATOM_DISTANCE."""
    if edge_vec.shape[0] == 0:
        return
    d2 = np.einsum("ij,ij->i", edge_vec, edge_vec)
    e = int(np.argmin(d2))
    if d2[e] >= MIN_ATOM_DISTANCE**2:
        return
    # i != j: an atom's own images are at least the cell thickness away (check_structure)
    i, j = sorted(int(k) for k in edge_index[:, e])
    distance = float(np.sqrt(d2[e]))
    raise ValueError(
        f"{_atom(i, symbols)} and {_atom(j, symbols)} are {distance:.3g} Å apart (< "
        f"{MIN_ATOM_DISTANCE} Å): overlapping atoms; the model is undefined there"
    )


def _vesin_grid(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """Shape of vesin 0.6.2's cell-list grid (it dies of SIGFPE when a side rounds to zero).

    Distances between the faces of its box (thickness along periodic axes, 1.01 × the extent
    of the atoms along the others) over the cutoff, rescaled to at most 1e5 cells; very
    anisotropic grids (a 2000 Å wide slab thinner than the cutoff, or an atom 1e6 Å away from
    a molecule) round one side to zero.
    """
    faces = _thickness(_search_box(cell, pbc))
    extent = positions.max(axis=0) - positions.min(axis=0)
    extent[extent < 1e-6] = 1.0
    faces[~pbc] = 1.01 * extent[~pbc]
    with np.errstate(all="ignore"):
        n = np.maximum(np.trunc(faces / cutoff), 1.0)
        if n.prod() > 1e5:
            ratio_xy, ratio_yz = n[0] / n[1], n[1] / n[2]
            n[2] = np.trunc(np.cbrt(1e5 / (ratio_xy * ratio_yz * ratio_yz)))
            n[1] = np.trunc(ratio_yz * n[2])
            n[0] = np.trunc(ratio_xy * n[1])
    return n


def build_graph(positions, cell, pbc, cutoff: float, symbols: Optional[Sequence[str]] = None) -> Graph:
    """Radius graph of atoms at `positions` (N, 3) in `cell` (3, 3) with periodicity `pbc`.

    `symbols` (optional) only serve error messages. Raises ValueError for non-finite
    positions or cell, a flat periodic cell, or atoms closer than MIN_ATOM_DISTANCE.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    check_structure(positions, cell, pbc, symbols)
    if len(positions) == 0:
        empty = np.zeros((0, 3))
        return Graph(np.zeros((2, 0), dtype=np.int64), empty, empty.copy())
    if not pbc.any():
        cell = np.zeros((3, 3))  # vesin ignores the box then; it may be degenerate
    grid = _vesin_grid(positions, cell, pbc, cutoff)
    if not np.isfinite(grid).all():
        raise ValueError(f"positions or cell too large for a neighbour list (extent "
                         f"{np.ptp(positions, axis=0).tolist()} Å, cell {cell.tolist()})")
    if (grid < 1).any():  # vesin would crash: ASE's (slower) neighbour list copes
        from ase.neighborlist import primitive_neighbor_list

        i, j, shift = primitive_neighbor_list("ijS", pbc, cell, positions, cutoff, self_interaction=False)
    else:
        i, j, shift = NeighborList(cutoff=cutoff, full_list=True).compute(
            positions, cell, pbc.tolist(), quantities="ijS"
        )
    edge_index = np.stack([i, j]).astype(np.int64)
    shift = shift.astype(np.float64)
    edge_vec = positions[j] - positions[i] + shift @ cell
    check_distances(edge_index, edge_vec, symbols)
    return Graph(edge_index, shift, edge_vec)


def graph_of_atoms(atoms, cutoff: float) -> Graph:
    """`build_graph` for an `ase.Atoms` (errors name atoms by index and symbol)."""
    return build_graph(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, atoms.get_chemical_symbols())
