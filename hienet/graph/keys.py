"""Names of the tensors that flow through HIENet, with their shapes.

One vocabulary for the graph builder, the model, the calculator, the trainer and the
exported file (the C++ runtime mirrors these names in `cpp/include/hienet/keys.h`).
N = number of nodes (atoms), E = number of directed edges, B = number of graphs in a batch.

Plus the limits every entry point (graph building in Python, the C++ runtime) enforces.
"""
from typing import Final

SPECIES: Final[str] = "species"  # (N,) int64, index into the model's species list
POSITIONS: Final[str] = "positions"  # (N, 3) Å
CELL: Final[str] = "cell"  # (B, 3, 3) Å, rows are lattice vectors
PBC: Final[str] = "pbc"  # (B, 3) bool
EDGE_INDEX: Final[str] = "edge_index"  # (2, E) int64: [centre i, neighbour j]
EDGE_SHIFT: Final[str] = "edge_shift"  # (E, 3) integer cell shifts S of neighbour j
EDGE_VEC: Final[str] = "edge_vec"  # (E, 3) Å: x_j - x_i + S @ cell
BATCH: Final[str] = "batch"  # (N,) int64, graph index of each node
NUM_ATOMS: Final[str] = "num_atoms"  # (B,) int64
VOLUME: Final[str] = "volume"  # (B,) Å^3

ATOM_ENERGY: Final[str] = "atom_energy"  # (N,) eV
ENERGY: Final[str] = "energy"  # (B,) eV
FORCES: Final[str] = "forces"  # (N, 3) eV/Å
STRESS: Final[str] = "stress"  # (B, 3, 3) eV/Å^3, ASE sign (tensile positive)
VIRIAL: Final[str] = "virial"  # (B, 3, 3) eV, W = -sum_e edge_vec ⊗ dE/d(edge_vec)
EDGE_GRAD: Final[str] = "edge_grad"  # (E, 3) eV/Å, dE/d(edge_vec)

# Two atoms closer than this (Å) count as coincident: an error naming both, never NaN.
MIN_ATOM_DISTANCE: Final[float] = 0.1
