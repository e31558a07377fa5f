"""Ensembles of HIENet models on one graph: the model deviation of active learning.

K models predict energies E_k, forces F_i,k and virials W_k of the same N atoms; ⟨·⟩ is the
mean over the models and std the population standard deviation over them (DeePMD-kit's
definitions, the columns of its `model_devi.out`):

    σ_i        = sqrt(⟨|F_i,k − ⟨F_i⟩|²⟩)           force deviation of atom i (eV/Å)
                 / (|⟨F_i⟩| + ε)                    `relative=ε`: relative to the mean force
    max/min/avg_devi_f = max, min, mean of σ_i over the atoms
    σ_ab       = std(W_ab,k / N)                    virial deviation per component (eV/atom),
                 over the 9 components of the symmetric virial (W_xy = W_yx: the upper
                 triangle, the 6 components LAMMPS accumulates)
    max/min/avg_devi_v = max, min, root mean square of the 9 σ_ab
    devi_e     = std(E_k / N)                       energy deviation per atom (eV/atom),
                 of total energies, as `dp model-devi` writes it (a per-atom split of the
                 energy is not unique, so per-atom energies are not compared)

Standard deviations are taken of the differences to the first model, so an ensemble of one
model repeated gives exactly 0. `pair_style hienet m1.pt m2.pt ... deviation every N`
(lammps_plugin/hienet_deviation.h) computes the same numbers in LAMMPS's units.

    members = [HIENetCalculator(path) for path in paths]       # or HIENetCalculator(paths)
    check_compatible(members)
    outputs = [member_outputs(m, species, edge_index, edge_vec) for m in members]
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from .ase_convert import results_from_outputs, species_indices
from .graph import graph_of_atoms
from .graph import keys as K
from .model.forces import evaluate, forces_from_edge_gradient, virial_from_edge_gradient

#: The columns after `step` of model_devi.out (DeePMD-kit's layout; devi_e as `dp model-devi`).
COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")

#: ASE results an ensemble calculator adds to the first model's.
DEVIATION_PROPERTIES = ("force_deviation", "energy_deviation", "virial_deviation", "model_deviation")

# the 9 components of a symmetric virial from its upper triangle: xx yy zz once, xy xz yz twice
_UPPER = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
_WEIGHTS = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])


@dataclass
class Deviation:
    """The model deviation of one structure (see the module docstring)."""

    atom_devi_f: np.ndarray   # (N,) σ_i
    virial: np.ndarray        # (3, 3) σ_ab of W / N, symmetric
    devi_e: float

    @property
    def row(self) -> np.ndarray:
        """The 7 values of a model_devi.out line after `step` (order of COLUMNS)."""
        sv = np.array([self.virial[a, b] for a, b in _UPPER])
        devi_f = self.atom_devi_f
        if devi_f.size == 0:
            devi_f = np.zeros(1)
        return np.array([sv.max(), sv.min(), np.sqrt((_WEIGHTS * sv**2).sum() / 9.0),
                         devi_f.max(), devi_f.min(), devi_f.mean(), self.devi_e])

    @property
    def max_devi_f(self) -> float:
        return float(self.row[3])


def spread(values: np.ndarray) -> np.ndarray:
    """Population standard deviation over axis 0, taken of the differences to values[0]."""
    values = np.asarray(values, dtype=np.float64)
    shifted = values - values[:1]
    return np.sqrt(np.mean((shifted - shifted.mean(axis=0)) ** 2, axis=0))


def model_deviation(energies, forces, virials, relative: Optional[float] = None) -> Deviation:
    """Deviation of K models' energies (K,), forces (K, N, 3) and virials (K, 3, 3) (eV, Å).

    `relative=ε` divides σ_i by |⟨F_i⟩| + ε (DeePMD-kit's `relative`)."""
    energies = np.asarray(energies, dtype=np.float64)
    forces = np.asarray(forces, dtype=np.float64)
    virials = np.asarray(virials, dtype=np.float64)
    if forces.ndim != 3 or forces.shape[2] != 3 or energies.shape != forces.shape[:1] \
            or virials.shape != (len(energies), 3, 3):
        raise ValueError(f"model_deviation needs energies (K,), forces (K, N, 3) and virials (K, 3, 3); "
                         f"got {energies.shape}, {forces.shape}, {virials.shape}")
    if relative is not None and not relative > 0:
        raise ValueError(f"relative must be a positive number (eV/Å), got {relative}")
    n = forces.shape[1]
    shifted = forces - forces[:1]
    mean = shifted.mean(axis=0)
    sigma = np.sqrt(np.mean(np.sum((shifted - mean) ** 2, axis=2), axis=0))
    if relative is not None:
        sigma = sigma / (np.linalg.norm(forces[0] + mean, axis=1) + relative)
    per_atom = max(n, 1)
    upper = np.stack([virials[:, a, b] for a, b in _UPPER], axis=1) / per_atom
    sv = spread(upper)
    virial = np.zeros((3, 3))
    for (a, b), s in zip(_UPPER, sv):
        virial[a, b] = virial[b, a] = s
    return Deviation(sigma, virial, float(spread(energies / per_atom)))


# ---------------------------------------------------------------------------------------------
# members: loaded models (HIENetCalculator instances) evaluated on a shared graph
# ---------------------------------------------------------------------------------------------
def member_dtype(member) -> torch.dtype:
    """The dtype a member evaluates in (an exported file fixes its own)."""
    return member.deployed.dtype if member.deployed is not None else member.dtype


def check_compatible(members: Sequence, names: Optional[Sequence[str]] = None) -> None:
    """ValueError naming both models and the difference unless all share cutoff, species
    (in the same order) and dtype: they must see one graph and give comparable numbers."""
    names = list(names) if names is not None else [m.source for m in members]
    first, first_name = members[0], names[0]
    rule = "all models of an ensemble must share cutoff, species and dtype"
    for member, name in zip(members[1:], names[1:]):
        both = f"{first_name} and {name}"
        if member.cutoff != first.cutoff:
            raise ValueError(f"{both} differ in cutoff ({first.cutoff} Å vs {member.cutoff} Å); {rule}")
        if list(member.species) != list(first.species):
            raise ValueError(f"{both} differ in species ({first_name} has {list(first.species)}, {name} has "
                             f"{list(member.species)}); {rule} (in the same order)")
        a, b = member_dtype(first), member_dtype(member)
        if a != b:
            raise ValueError(f"{both} differ in dtype ({str(a).replace('torch.', '')} vs "
                             f"{str(b).replace('torch.', '')}); {rule}")


def member_outputs(member, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                   batch: Optional[torch.Tensor] = None, num_graphs: int = 1) -> dict:
    """atom_energy (N,), forces (N, 3) and virial (B, 3, 3) of one member on a (batched) graph.

    Exported files: forces and virial from the edge gradients in double precision, as the C++
    runtime does; checkpoints and modules: `hienet.model.forces.evaluate`."""
    n = int(species.shape[0])
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=species.device)
    edge_vec = edge_vec.to(member_dtype(member))
    if member.deployed is None:
        out = evaluate(member.model, species, edge_index, edge_vec, batch, num_graphs)
        return {K.ATOM_ENERGY: out[K.ATOM_ENERGY], K.FORCES: out[K.FORCES], K.VIRIAL: out[K.VIRIAL]}
    _, atom_energy, grad = member.deployed(species, edge_index, edge_vec, n)
    grad, edge_vec = grad.detach().double(), edge_vec.double()
    return {
        K.ATOM_ENERGY: atom_energy.detach(),
        K.FORCES: forces_from_edge_gradient(grad, edge_index, n),
        K.VIRIAL: virial_from_edge_gradient(grad, edge_vec, batch[edge_index[0]], num_graphs),
    }


def ensemble_results(members: List, atoms, relative: Optional[float] = None) -> dict:
    """ASE results of the first member (energy, energies, forces, stress) plus the deviation of
    all members, evaluated on one graph of `atoms`:

    force_deviation (N,) σ_i (eV/Å), energy_deviation devi_e (eV/atom), virial_deviation
    (3, 3) σ_ab (eV/atom), model_deviation: the 7 values of a model_devi.out line."""
    first = members[0]
    symbols = atoms.get_chemical_symbols()
    device = first.device
    species = torch.as_tensor(species_indices(symbols, first.species, first.source), device=device)
    graph = graph_of_atoms(atoms, first.cutoff)
    edge_index = torch.as_tensor(graph.edge_index, dtype=torch.long, device=device)
    edge_vec = torch.as_tensor(graph.edge_vec, dtype=member_dtype(first), device=device)
    outputs = [member_outputs(m, species, edge_index, edge_vec) for m in members]
    results = results_from_outputs(outputs[0], abs(atoms.cell.volume), symbols, first.source)
    for member, out in zip(members[1:], outputs[1:]):  # a broken member is named, never averaged in
        results_from_outputs(out, 0.0, symbols, member.source)
    deviation = model_deviation(
        [float(o[K.ATOM_ENERGY].detach().double().cpu().numpy().sum()) for o in outputs],
        [o[K.FORCES].detach().double().cpu().numpy() for o in outputs],
        [o[K.VIRIAL][0].detach().double().cpu().numpy() for o in outputs],
        relative,
    )
    results["force_deviation"] = deviation.atom_devi_f
    results["energy_deviation"] = deviation.devi_e
    results["virial_deviation"] = deviation.virial
    results["model_deviation"] = deviation.row
    return results
