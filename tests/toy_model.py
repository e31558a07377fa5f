"""A small TorchScript model that obeys export/FORMAT.md (format version 2) exactly.

It stands in for a real `hienet-export` file in the C++ runtime and LAMMPS tests: same
`forward(species, edge_index, edge_vec, n_local)` signature and outputs, the same stage
methods, the same `metadata.json` extra file. It is small and fast but deliberately not a
pair potential, so that mistakes in species mapping, edge direction, ghost handling or the
virial show up:

* per-species embeddings and energy shifts (a wrong type -> species map changes energies);
* `num_message_passing_layers` rounds of message passing, so the energy of an atom depends
  on atoms up to layers x cutoff away (a ghost shell that is too thin changes results);
* a vector (l = 1) channel whose squared norm adds three-body, angle-dependent terms
  (a sign error in edge_vec changes the energy);
* messages carry the neighbour's features to the centre (`edge_index[0]` aggregates) and,
  with other weights, the centre's features to the neighbour, so swapping i and j changes
  the energy and a graph missing one direction of an edge is wrong.

The cutoff function (1 - (r/rc)^2)^2 makes energy and forces continuous at the cutoff,
so NVE runs conserve energy (`smooth=False` drops it, for comparison).

    write_toy_model(path, dtype="float64")  ->  path
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Tuple

import torch

TOY_SPECIES = ["H", "C", "O", "Na", "Si", "Cl"]
TOY_CUTOFF = 4.0
TOY_LAYERS = 2
TOY_FEATURES = 8


class ToyHIENet(torch.nn.Module):
    def __init__(self, num_species: int, cutoff: float, num_layers: int, features: int, seed: int,
                 smooth: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        K = features

        def rand(*shape, scale=1.0):
            return scale * (2.0 * torch.rand(*shape, generator=g, dtype=torch.float64) - 1.0)

        self.cutoff = cutoff
        self.smooth = smooth
        self.num_interactions = num_layers
        # buffers, not parameters: an exported model needs no parameter gradients
        self.register_buffer("embedding", rand(num_species, K))
        self.register_buffer("shift", rand(num_species, scale=3.0))
        self.register_buffer("widths", 0.2 + 0.6 * torch.rand(K, generator=g, dtype=torch.float64))
        self.register_buffer("mix", rand(num_layers, K, K, scale=0.8))
        self.register_buffer("reverse_mix", rand(num_layers, K, K, scale=0.4))
        self.register_buffer("vector_mix", rand(num_layers, K, scale=1.0))
        self.register_buffer("readout_weights", rand(K, scale=1.0))

    def embed(self, species: torch.Tensor) -> torch.Tensor:
        return self.embedding[species]

    def edge_features(self, edge_vec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        r = torch.linalg.norm(edge_vec, dim=1)
        u = (r / self.cutoff).clamp(max=1.0)
        envelope = (1.0 - u * u) ** 2 if self.smooth else torch.ones_like(u)
        radial = torch.exp(-self.widths * (r * r).unsqueeze(1)) * envelope.unsqueeze(1)
        sh = edge_vec / r.unsqueeze(1)
        return radial, sh

    def interaction(self, k: int, x: torch.Tensor, edge_index: torch.Tensor,
                    radial: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        centre = edge_index[0]
        neighbour = edge_index[1]
        xj = x[neighbour]
        message = (xj @ self.mix[k]) * radial                                  # [E, K]
        scalar = torch.zeros_like(x).index_add_(0, centre, message)
        # a weaker message the other way, with other weights: the graph must hold every
        # edge in both directions, whichever end a real model aggregates on
        reverse = (x[centre] @ self.reverse_mix[k]) * radial
        scalar = scalar.index_add_(0, neighbour, reverse)
        vector_message = sh.unsqueeze(2) * (radial * xj * self.vector_mix[k]).unsqueeze(1)
        vector = torch.zeros(x.shape[0], 3, x.shape[1], dtype=x.dtype, device=x.device)
        vector = vector.index_add_(0, centre, vector_message)                 # [N, 3, K]
        return x + torch.tanh(scalar) + 0.3 * (vector * vector).sum(1)

    def readout(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return x @ self.readout_weights + self.shift[species]

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        edge_vec = edge_vec.detach().requires_grad_(True)
        x = self.embed(species)
        radial, sh = self.edge_features(edge_vec)
        for k in range(self.num_interactions):
            x = self.interaction(k, x, edge_index, radial, sh)
        atom_energy = self.readout(x, species)[:n_local].to(torch.float64)
        energy = atom_energy.sum()
        grad = torch.zeros_like(edge_vec)
        if energy.requires_grad:
            grads = torch.autograd.grad([energy], [edge_vec], allow_unused=True)
            g0 = grads[0]
            if g0 is not None:
                grad = g0
        return energy.detach(), atom_energy.detach(), grad.detach()


def write_toy_model(path, dtype: str = "float64", *, cutoff: float = TOY_CUTOFF,
                    num_layers: int = TOY_LAYERS, species: List[str] = TOY_SPECIES,
                    seed: int = 0, smooth: bool = True, format_version=2,
                    metadata_overrides: dict | None = None) -> Path:
    """Write a toy model file obeying export/FORMAT.md; returns its path.

    `smooth=False` drops the cutoff envelope (energy jumps when a pair crosses the cutoff),
    for comparison in energy-conservation tests. `format_version` and `metadata_overrides`
    exist to write deliberately wrong files.
    """
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    model = ToyHIENet(len(species), cutoff, num_layers, TOY_FEATURES, seed, smooth).to(torch_dtype).eval()
    scripted = torch.jit.script(model)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.double().numpy().tobytes())
    config = {"model": "toy", "features": TOY_FEATURES, "seed": seed, "smooth": smooth}
    digest.update(json.dumps(config, sort_keys=True).encode())
    metadata = {
        "format_version": format_version,
        "hienet_version": "toy",
        "cutoff": cutoff,
        "num_message_passing_layers": num_layers,
        "species": list(species),
        "dtype": dtype,
        "torch_version": torch.__version__,
        "model_hash": "sha256:" + digest.hexdigest(),
        "units": {"energy": "eV", "length": "Å"},
        "config": config,
    }
    metadata.update(metadata_overrides or {})
    path = Path(path)
    scripted.save(str(path), _extra_files={"metadata.json": json.dumps(metadata)})
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a FORMAT.md toy model file.")
    parser.add_argument("output")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args()
    print(write_toy_model(args.output, args.dtype))
