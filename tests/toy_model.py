"""A small TorchScript model that obeys export/FORMAT.md (format version 2) exactly.

It stands in for a real `hienet-export` file in the C++ runtime and LAMMPS tests: same
`forward(species, edge_index, edge_vec, n_local)` signature and outputs, the same stage
methods (embed, edge_features, invariant_layer, interaction, readout) with the same
aggregation conventions, the same `metadata.json` extra file. It is small and fast but
deliberately not a pair potential, so that mistakes in species mapping, edge direction,
ghost handling, the feature exchange or the virial show up:

* per-species embeddings and energy shifts (a wrong type -> species map changes energies);
* an invariant layer that sums at `edge_index[1]` (as HIENet's does) and
  `num_message_passing_layers - 1` interactions that sum at `edge_index[0]`, so the energy
  of an atom depends on atoms up to layers x cutoff away (a ghost shell that is too thin,
  or a missing exchange, changes results);
* messages that depend on both ends of an edge, asymmetrically, so swapping i and j changes
  the energy and a graph missing one direction of an edge is wrong;
* a vector (l = 1) channel whose squared norm adds three-body, angle-dependent terms
  (a sign error in edge_vec changes the energy);
* feature widths that change from layer to layer (8, 5, 8, ...), so the exchange must
  follow the metadata `exchange_widths`.

The cutoff function (1 - (r/rc)^2)^2 makes energy and forces continuous at the cutoff,
so NVE runs conserve energy (`smooth=False` drops it, for comparison).

    write_toy_model(path, dtype="float64")  ->  path
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import List, Tuple

import torch

TOY_SPECIES = ["H", "C", "O", "Na", "Si", "Cl"]
TOY_CUTOFF = 4.0
TOY_LAYERS = 3
TOY_FEATURES = 8
TOY_CORE, TOY_CORE_RADIUS = 0.5, 1.6    # eV, Å: pair repulsion 0.5 (1.6 Å / r)^8 per neighbour
TOY_STEP = 0.1                          # smooth=False: the envelope's step at the cutoff


def toy_widths(num_layers: int) -> List[int]:
    """Width of the features entering interaction k (and the readout, last)."""
    return [TOY_FEATURES if k % 2 == 0 else 5 for k in range(num_layers)]


def _rand(g, *shape, scale=1.0):
    return scale * (2.0 * torch.rand(*shape, generator=g, dtype=torch.float64) - 1.0)


class ToyInteraction(torch.nn.Module):
    """Sums at the centre edge_index[0]: neighbour and centre features, radial, directions."""

    def __init__(self, width_in: int, width_out: int, g):
        super().__init__()
        # buffers, not parameters: an exported model needs no parameter gradients
        self.register_buffer("self_mix", _rand(g, width_in, width_out, scale=0.8))
        self.register_buffer("mix", _rand(g, width_in, width_out, scale=0.8))
        self.register_buffer("centre_mix", _rand(g, width_in, width_out, scale=0.4))
        self.register_buffer("radial_mix", _rand(g, TOY_FEATURES, width_out, scale=1.0))
        self.register_buffer("vector_mix", _rand(g, width_in, width_out, scale=0.6))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, radial: torch.Tensor,
                sh: torch.Tensor, n_out: int = -1) -> torch.Tensor:
        centre, neighbour = edge_index[0], edge_index[1]
        n = x.shape[0] if n_out < 0 else n_out                                 # rows computed
        core = x[:, :1]
        h = torch.cat([torch.zeros_like(core), x[:, 1:]], dim=1)              # core not mixed in
        r = radial[:, :-1] @ self.radial_mix                                   # [E, W]
        hj = h[neighbour]
        message = (hj @ self.mix + h[centre] @ self.centre_mix) * r
        scalar = torch.zeros(n, r.shape[1], dtype=x.dtype, device=x.device)
        scalar = scalar.index_add_(0, centre, message)
        vector_message = sh.unsqueeze(2) * (r * (hj @ self.vector_mix)).unsqueeze(1)
        vector = torch.zeros(n, 3, r.shape[1], dtype=x.dtype, device=x.device)
        vector = vector.index_add_(0, centre, vector_message)                 # [N, 3, W]
        out = torch.tanh(h[:n] @ self.self_mix) + torch.tanh(scalar) + 0.3 * (vector * vector).sum(1)
        # channel 0 carries the repulsive core of the invariant layer to the readout unchanged
        return torch.cat([core[:n], out[:, 1:]], dim=1)


class ToyHIENet(torch.nn.Module):
    def __init__(self, num_species: int, cutoff: float, num_layers: int, features: int, seed: int,
                 smooth: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        K = features
        self.cutoff = cutoff
        self.smooth = smooth
        self.core, self.core_radius = TOY_CORE, TOY_CORE_RADIUS
        self.step = TOY_STEP
        widths = toy_widths(num_layers)
        self.num_interactions = num_layers - 1
        self.register_buffer("embedding", _rand(g, num_species, K))
        self.register_buffer("shift", _rand(g, num_species, scale=3.0))
        self.register_buffer("widths", 0.2 + 0.6 * torch.rand(K, generator=g, dtype=torch.float64))
        self.register_buffer("source_mix", _rand(g, K, K, scale=0.8))
        self.register_buffer("target_mix", _rand(g, K, K, scale=0.5))
        self.interactions = torch.nn.ModuleList(
            [ToyInteraction(widths[k], widths[k + 1], g) for k in range(num_layers - 1)])
        readout = _rand(g, widths[-1], scale=1.0)
        readout[0] = 1.0                                   # the repulsive core (channel 0)
        self.register_buffer("readout_weights", readout)

    @torch.jit.export
    def embed(self, species: torch.Tensor) -> torch.Tensor:
        return self.embedding[species]

    @torch.jit.export
    def edge_features(self, edge_vec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = torch.linalg.norm(edge_vec, dim=1)
        u = (r / self.cutoff).clamp(max=1.0)
        smooth_envelope = (1.0 - u * u) ** 2
        # not smooth: messages step down by STEP (not to zero) when a pair crosses the cutoff
        envelope = smooth_envelope if self.smooth else smooth_envelope + self.step
        radial = torch.exp(-self.widths * (r * r).unsqueeze(1)) * envelope.unsqueeze(1)
        core = self.core * (self.core_radius / r) ** 8 * smooth_envelope       # repulsion
        sh = edge_vec / r.unsqueeze(1)
        return torch.cat([radial, core.unsqueeze(1)], dim=1), envelope.unsqueeze(1), sh

    @torch.jit.export
    def invariant_layer(self, x: torch.Tensor, edge_index: torch.Tensor, radial: torch.Tensor,
                        envelope: torch.Tensor, n_out: int = -1) -> torch.Tensor:
        """Sums at the target edge_index[1] (the official PyG orientation of HIENet)."""
        source, target = edge_index[0], edge_index[1]
        x_out = x if n_out < 0 else x[:n_out]
        message = torch.tanh(x[source] @ self.source_mix + x[target] @ self.target_mix)
        basis, core = radial[:, :-1], radial[:, -1:]
        message = message * basis * envelope
        # channel 0 sums the repulsive core (read out with weight +1 through every layer):
        # it keeps MD runs bound and stable whatever the random weights
        message = torch.cat([core, message[:, 1:]], dim=1)
        return x_out + torch.zeros_like(x_out).index_add_(0, target, message)

    @torch.jit.export
    def interaction(self, k: int, x: torch.Tensor, edge_index: torch.Tensor,
                    radial: torch.Tensor, sh: torch.Tensor, n_out: int = -1) -> torch.Tensor:
        for i, block in enumerate(self.interactions):
            if i == k:
                return block(x, edge_index, radial, sh, n_out)
        raise RuntimeError("interaction index out of range")

    @torch.jit.export
    def readout(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return x @ self.readout_weights + self.shift[species]

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        edge_vec = edge_vec.detach().requires_grad_(True)
        radial, envelope, sh = self.edge_features(edge_vec)
        x = self.invariant_layer(self.embed(species), edge_index, radial, envelope, -1)
        for block in self.interactions:
            x = block(x, edge_index, radial, sh)
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
                    metadata_overrides: dict | None = None, nan_species: str | None = None) -> Path:
    """Write a toy model file obeying export/FORMAT.md; returns its path.

    `smooth=False` drops the cutoff envelope (energy jumps when a pair crosses the cutoff),
    for comparison in energy-conservation tests. `format_version`, `metadata_overrides` and
    `nan_species` (a NaN energy shift for that element: a broken model) exist to write
    deliberately wrong files.
    """
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    model = ToyHIENet(len(species), cutoff, num_layers, TOY_FEATURES, seed, smooth).to(torch_dtype).eval()
    if nan_species is not None:
        with torch.no_grad():
            model.shift[list(species).index(nan_species)] = float("nan")
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
        "exchange_widths": toy_widths(num_layers)[:-1],
        "units": {"energy": "eV", "length": "Å"},
        "config": config,
    }
    draft = io.BytesIO()
    torch.jit.save(scripted, draft)
    metadata["archive_digest"] = archive_digest(draft.getvalue())
    metadata.update(metadata_overrides or {})
    path = Path(path)
    scripted.save(str(path), _extra_files={"metadata.json": json.dumps(metadata)})
    return path


def archive_digest(archive: bytes) -> str:
    """FORMAT.md's archive digest, written from its text (independent of hienet.integrity)."""
    records = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        for info in z.infolist():
            name = info.filename.split("/", 1)[1]
            if name not in ("extra/metadata.json", ".data/serialization_id"):
                records[name.encode()] = z.read(info)
    lines = b"".join(b"%s\0%d\0%08x\n" % (name, len(records[name]), zlib.crc32(records[name]))
                     for name in sorted(records))
    return "sha1:" + hashlib.sha1(lines).hexdigest()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a FORMAT.md toy model file.")
    parser.add_argument("output")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args()
    print(write_toy_model(args.output, args.dtype))
