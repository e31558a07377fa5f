"""Evaluate a file written by `hienet-export` on ASE structures (Python twin of `cpp/`).

    model = DeployedModel("model.pt")
    results = model.evaluate(atoms)   # energy, free_energy, energies, forces, stress (ASE units)
"""
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from .graph import graph_of_atoms

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def read_metadata(path) -> Dict[str, Any]:
    """The metadata of an exported file, without loading the model code."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("extra/" + METADATA_FILE)]
            if not names:
                raise ValueError(f"{path} has no {METADATA_FILE}: not a file written by hienet-export")
            meta = json.loads(archive.read(names[0]))
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not an exported HIENet model (not a zip archive; corrupt?)") from None
    check_metadata(meta, path)
    return meta


def check_metadata(meta: Dict[str, Any], path) -> None:
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported HIENet model format version {version!r} in {path} (this hienet reads "
            f"{FORMAT_VERSION}); re-export it with this version's hienet-export"
        )
    for key in ("cutoff", "species", "dtype", "num_message_passing_layers"):
        if key not in meta:
            raise ValueError(f"{path}: metadata lacks {key!r}")
    if meta["dtype"] not in _DTYPES:
        raise ValueError(f"{path}: metadata dtype {meta['dtype']!r} is not float32/float64")


class DeployedModel:
    """An exported HIENet file, evaluated exactly as the C++ runtime does."""

    def __init__(self, path, device="cpu"):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.device = torch.device(device)
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as err:
            raise ValueError(f"cannot load exported model {self.path} (corrupt?): {err}") from None
        self.species = list(self.metadata["species"])
        self.cutoff = float(self.metadata["cutoff"])
        self.dtype = _DTYPES[self.metadata["dtype"]]

    def __call__(self, species, edge_index, edge_vec, n_local: int):
        """The raw module call: (energy, atom_energy, edge_grad), see export/FORMAT.md."""
        return self.module(species, edge_index, edge_vec, n_local)

    def evaluate(self, atoms) -> Dict[str, Any]:
        from .calculator import species_indices, voigt

        species = species_indices(atoms.get_chemical_symbols(), self.species, str(self.path))
        graph = graph_of_atoms(atoms, self.cutoff)
        dev = self.device
        energy, atom_energy, grad = self(
            torch.as_tensor(species, device=dev),
            torch.as_tensor(graph.edge_index, device=dev),
            torch.as_tensor(graph.edge_vec, dtype=self.dtype, device=dev),
            len(atoms),
        )
        g = grad.detach().double().cpu().numpy()
        i, j = graph.edge_index
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, g)
        np.add.at(forces, j, -g)
        energies = atom_energy.detach().cpu().numpy()
        total = float(energy.detach())
        results = {
            "energy": total,
            "free_energy": total,
            "energies": energies,
            "forces": forces,
        }
        volume = abs(atoms.cell.volume)
        if volume > 0:
            sigma = graph.edge_vec.T @ g / volume  # (1/V) Σ_e r_e ⊗ g_e
            results["stress"] = voigt(0.5 * (sigma + sigma.T))
        return results
