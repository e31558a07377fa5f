"""The HIENet model: species and edges in, per-atom energies out.

    species ─ embedding ─► x (C x 0e)
    edge_vec ─► |r| ─► radial b(r)·u(r) ;  r̂ ─► Y(r̂)
    x ─ invariant attention layer ─► x ─ equivariant block × K ─► x (scalars)
      ─ linear ─ linear ─► ε_i ;  E_i = scale[s_i] · ε_i + shift[s_i]

Forces and stress are not computed here: they come from one backward pass of the energy
with respect to `edge_vec` (see `hienet.model.forces`), the same path as the C++ runtime.
"""
import math
from typing import Any, Dict, List

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

from .config import validate_config
from .convolution import resolve_kernel
from .equivariant import EquivariantBlock
from .invariant import InvariantAttentionLayer
from .radial import RadialEmbedding


def with_parity(irreps: str, parity: bool) -> o3.Irreps:
    """Irreps as written (parity=False, all 'e'), or with the proper parity (-1)^l for l > 0."""
    irreps = o3.Irreps(irreps)
    if not parity:
        return o3.Irreps([(mul, (ir.l, 1)) for mul, ir in irreps])
    return o3.Irreps([(mul, (ir.l, 1 if ir.l == 0 else (-1) ** ir.l)) for mul, ir in irreps])


@compile_mode("script")
class SpeciesEmbedding(nn.Module):
    """One-hot species → linear map to `channels` scalars (e3nn Linear normalisation 1/√n)."""

    def __init__(self, num_species: int, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_species, channels))
        self.norm = 1.0 / math.sqrt(num_species)

    def forward(self, species: torch.Tensor) -> torch.Tensor:
        return self.weight[species] * self.norm


@compile_mode("script")
class Readout(nn.Module):
    """Scalars (N, F) → linear (F → F/2) → linear (F/2 → 1): the official two linear maps."""

    def __init__(self, irreps_in: o3.Irreps):
        super().__init__()
        hidden = o3.Irreps(f"{irreps_in.num_irreps // 2}x0e")
        self.hidden = o3.Linear(irreps_in, hidden, biases=False)
        self.energy = o3.Linear(hidden, o3.Irreps("1x0e"), biases=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(self.hidden(x)).squeeze(-1)


@compile_mode("script")
class HIENet(nn.Module):
    """Hybrid invariant–equivariant interatomic potential.

    forward(species (N,), edge_index (2, E), edge_vec (E, 3)) -> atom energies (N,)
    """

    __jit_unused_properties__ = ["convolution"]

    def __init__(self, config: Dict[str, Any]):
        super().__init__()
        config = validate_config(config)
        self.config = config
        self.species: List[str] = list(config["species"])
        self.cutoff = float(config["cutoff"])
        parity = bool(config["parity"])
        n_species = len(self.species)
        channels = int(config["invariant_features"])
        num_radial = int(config["num_radial_basis"])

        self.radial = RadialEmbedding(self.cutoff, num_radial, int(config["envelope_p"]))
        irreps_sh = o3.Irreps.spherical_harmonics(int(config["lmax"]), -1 if parity else 1)
        self.spherical_harmonics = o3.SphericalHarmonics(
            irreps_sh, normalize=True, normalization="component"
        )
        self.embedding = SpeciesEmbedding(n_species, channels)
        self.invariant = InvariantAttentionLayer(
            channels, num_radial, smooth=bool(config["smooth_invariant"])
        )
        irreps = [o3.Irreps(f"{channels}x0e")] + [
            with_parity(s, parity) for s in config["hidden_irreps"]
        ]
        self.interactions = nn.ModuleList(
            [
                EquivariantBlock(
                    irreps[k],
                    irreps[k + 1],
                    irreps_sh,
                    num_radial,
                    list(config["radial_mlp_hidden"]),
                    config["conv_denominator"],
                    last=(k == len(irreps) - 2),
                    convolution=config["convolution"],
                )
                for k in range(len(irreps) - 1)
            ]
        )
        self.readout = Readout(irreps[-1])
        # float64 from the start, so that `.double()` keeps the config values exactly
        self.register_buffer("shift", torch.tensor(config["shift"], dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(config["scale"], dtype=torch.float64))
        self.num_interactions = len(self.interactions)
        # invariant layer + equivariant blocks: the receptive field is this × cutoff
        self.num_message_passing_layers = 1 + self.num_interactions

    def set_convolution(self, kernel: str) -> str:
        """Switch every equivariant block to the "fused" or "e3nn" kernel ("auto": fused if the
        operator library loads); the weights and the numbers stay the same. Returns the kernel."""
        used = [block.set_convolution(kernel) for block in self.interactions]
        self.config["convolution"] = kernel
        return used[0] if used else resolve_kernel(kernel)

    @property
    def convolution(self) -> str:
        """The kernel in use: "fused" or "e3nn"."""
        kinds = {block.convolution for block in self.interactions}
        return kinds.pop() if len(kinds) == 1 else "e3nn"

    # Stages, in order. Composing them is `forward`. n_out >= 0 computes only the first n_out
    # rows of a message-passing stage (the owned atoms of a multi-rank graph, FORMAT.md).
    @torch.jit.export
    def embed(self, species: torch.Tensor) -> torch.Tensor:
        return self.embedding(species)

    @torch.jit.export
    def edge_features(self, edge_vec: torch.Tensor):
        """(radial embedding (E, B), envelope (E, 1), spherical harmonics (E, dim Y))."""
        r = torch.linalg.norm(edge_vec, dim=-1)
        radial, envelope = self.radial(r)
        return radial, envelope, self.spherical_harmonics(edge_vec)

    @torch.jit.export
    def invariant_layer(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        return self.invariant(x, edge_index, radial, envelope, n_out)

    @torch.jit.export
    def interaction(
        self,
        k: int,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        sh: torch.Tensor,
        n_out: int = -1,
    ) -> torch.Tensor:
        for i, block in enumerate(self.interactions):
            if i == k:
                return block(x, edge_index, radial, sh, n_out)
        raise RuntimeError("interaction index out of range")

    @torch.jit.export
    def atom_energies(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        energy = self.readout(x)
        return energy * self.scale[species].to(energy.dtype) + self.shift[species].to(energy.dtype)

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor
    ) -> torch.Tensor:
        radial, envelope, sh = self.edge_features(edge_vec)
        x = self.embed(species)
        x = self.invariant(x, edge_index, radial, envelope)
        for block in self.interactions:
            x = block(x, edge_index, radial, sh)
        return self.atom_energies(x, species)


def build_model(config: Dict[str, Any]) -> HIENet:
    """Build an (untrained) HIENet from a config dict (see `hienet.model.config`)."""
    return HIENet(config)
