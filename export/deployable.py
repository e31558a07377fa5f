"""The module that `hienet-export` scripts: graph in, energy and edge gradients out.

See FORMAT.md beside this file for the contract shared with `hienet.deploy` and `cpp/`.
"""
from typing import Tuple

import torch
from e3nn.util.jit import compile_mode
from torch import nn

from hienet.model import HIENet


@compile_mode("script")
class DeployableHIENet(nn.Module):
    """forward(species, edge_index, edge_vec, n_local) -> (energy, atom_energy, edge_grad)."""

    def __init__(self, model: HIENet):
        super().__init__()
        self.model = model
        self.num_interactions = model.num_interactions

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if n_local < 0 or n_local > species.shape[0]:
            raise ValueError("n_local must lie in [0, number of nodes]")
        edge_vec = edge_vec.detach().requires_grad_(True)
        atom_energy = self.model(species, edge_index, edge_vec)[:n_local].to(torch.float64)
        energy = atom_energy.sum()
        grads = torch.autograd.grad([energy], [edge_vec], allow_unused=True)
        edge_grad = grads[0]
        if edge_grad is None:
            edge_grad = torch.zeros_like(edge_vec)
        return energy.detach(), atom_energy.detach(), edge_grad

    # Stages, for layer-by-layer evaluation with ghost-feature exchange between layers
    # (FORMAT.md, "Stage methods"; n_out >= 0: only the first n_out rows are computed).
    @torch.jit.export
    def embed(self, species: torch.Tensor) -> torch.Tensor:
        return self.model.embed(species)

    @torch.jit.export
    def edge_features(self, edge_vec: torch.Tensor):
        """(radial (E, B), envelope (E, 1), spherical harmonics (E, dim Y))."""
        return self.model.edge_features(edge_vec)

    @torch.jit.export
    def invariant_layer(
        self, x: torch.Tensor, edge_index: torch.Tensor, radial: torch.Tensor, envelope: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        return self.model.invariant_layer(x, edge_index, radial, envelope, n_out)

    @torch.jit.export
    def interaction(
        self, k: int, x: torch.Tensor, edge_index: torch.Tensor, radial: torch.Tensor, sh: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        return self.model.interaction(k, x, edge_index, radial, sh, n_out)

    @torch.jit.export
    def readout(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return self.model.atom_energies(x, species)
