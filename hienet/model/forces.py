"""Energy → forces, virial and stress from one backward pass over the edge vectors.

With g_e = dE/d(edge_vec_e) and edge_vec_e = x_j - x_i + S_e · cell for e = (i, j):

    F_i = -dE/dx_i = Σ_{e=(i,·)} g_e - Σ_{e=(·,i)} g_e
    W   = -Σ_e edge_vec_e ⊗ g_e                (virial, LAMMPS sign)
    σ   = -W / V = (1/V) Σ_e edge_vec_e ⊗ g_e   (stress = (1/V) dE/dε, ASE sign)

The C++ runtime applies exactly these formulas to the `edge_grad` of an exported model.
"""
from typing import Dict, Optional

import torch

from ..graph import keys as K


def edge_gradient(
    energy: torch.Tensor, edge_vec: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """g = dE/d(edge_vec); zeros if the energy does not depend on any edge."""
    (grad,) = torch.autograd.grad(
        [energy], [edge_vec], create_graph=create_graph, allow_unused=True
    )
    if grad is None:
        grad = torch.zeros_like(edge_vec)
    return grad


def forces_from_edge_gradient(
    edge_grad: torch.Tensor, edge_index: torch.Tensor, num_nodes: int
) -> torch.Tensor:
    forces = torch.zeros((num_nodes, 3), dtype=edge_grad.dtype, device=edge_grad.device)
    forces.index_add_(0, edge_index[0], edge_grad)
    forces.index_add_(0, edge_index[1], -edge_grad)
    return forces


def virial_from_edge_gradient(
    edge_grad: torch.Tensor, edge_vec: torch.Tensor, edge_graph: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """(B, 3, 3) virial W = -Σ_e r_e ⊗ g_e per graph (`edge_graph` = graph of each edge)."""
    per_edge = -edge_vec.unsqueeze(-1) * edge_grad.unsqueeze(-2)
    virial = torch.zeros((num_graphs, 3, 3), dtype=per_edge.dtype, device=per_edge.device)
    return virial.index_add_(0, edge_graph, per_edge)


def evaluate(
    model,
    species: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vec: torch.Tensor,
    batch: Optional[torch.Tensor] = None,
    num_graphs: int = 1,
    volume: Optional[torch.Tensor] = None,
    compute_forces: bool = True,
    compute_stress: bool = True,
    create_graph: bool = False,
) -> Dict[str, torch.Tensor]:
    """Energies, forces, virial and stress of a (batched) graph.

    `batch` (N,) assigns nodes to graphs (default: one graph). `volume` (B,) is needed for the
    stress. With `create_graph=True` the outputs stay differentiable (training on forces).
    """
    num_nodes = species.shape[0]
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=species.device)
    if compute_forces or compute_stress:
        edge_vec = edge_vec.detach().requires_grad_(True) if not edge_vec.requires_grad else edge_vec
    atom_energy = model(species, edge_index, edge_vec)
    energy = torch.zeros(num_graphs, dtype=atom_energy.dtype, device=atom_energy.device)
    energy = energy.index_add(0, batch, atom_energy)
    out = {K.ATOM_ENERGY: atom_energy, K.ENERGY: energy}
    if not (compute_forces or compute_stress):
        return out
    grad = edge_gradient(energy.sum(), edge_vec, create_graph=create_graph)
    out[K.EDGE_GRAD] = grad
    if compute_forces:
        out[K.FORCES] = forces_from_edge_gradient(grad, edge_index, num_nodes)
    if compute_stress:
        virial = virial_from_edge_gradient(grad, edge_vec, batch[edge_index[0]], num_graphs)
        out[K.VIRIAL] = virial
        if volume is not None:
            out[K.STRESS] = -virial / volume.view(-1, 1, 1)
    return out
