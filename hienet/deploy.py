"""Evaluate a file written by `hienet-export` on ASE structures (Python twin of `cpp/`).

    model = DeployedModel("model.pt")
    results = model.evaluate(atoms)   # energy, free_energy, energies, forces, stress (ASE units)
"""
import json
from pathlib import Path
from typing import Any, Dict

import torch

from .graph import graph_of_atoms
from .graph import keys as K

FORMAT_VERSION = 2
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


def require_custom_ops(meta: Dict[str, Any], path) -> None:
    """Load the operator library the file needs, or say which operators are missing."""
    from . import ops

    needed = list(meta.get("custom_ops", []))
    missing = ops.missing_operators(needed)
    if missing:
        ours = [name for name in missing if name in ops.OPERATORS]
        where = (
            f" from the HIENet operator library {ops.library_path()}, which is not loaded "
            f"({ops.load_error()})" if ours else ""
        )
        raise ValueError(
            f"{path} needs the custom operator(s) {', '.join(missing)}{where}; re-export it "
            "with `hienet-export --convolution e3nn` to run without them"
        )


class DeployedModel:
    """An exported HIENet file, evaluated exactly as the C++ runtime does."""

    def __init__(self, path, device="cpu"):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.device = torch.device(device)
        require_custom_ops(self.metadata, self.path)
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as err:
            raise ValueError(f"cannot load exported model {self.path} (corrupt?): {err}") from None
        self.species = list(self.metadata["species"])
        self.cutoff = float(self.metadata["cutoff"])
        self.dtype = _DTYPES[self.metadata["dtype"]]

    def __call__(self, species, edge_index, edge_vec, n_local: int):
        """The raw module call: (energy, atom_energy, edge_grad), see export/FORMAT.md.

        Run by TorchScript's plain interpreter (no profiling executor), as the C++ runtime
        does: its specialised autodiff graphs are slower than eager autograd for this model
        and re-profile on the first calls (export/FORMAT.md, "Evaluation")."""
        with torch.jit.optimized_execution(False):
            return self.module(species, edge_index, edge_vec, n_local)

    def evaluate(self, atoms) -> Dict[str, Any]:
        """ASE results (energy, free_energy, energies, forces, stress when the cell has a volume)."""
        from .calculator import results_from_outputs, species_indices
        from .model.forces import forces_from_edge_gradient, virial_from_edge_gradient

        species = species_indices(atoms.get_chemical_symbols(), self.species, str(self.path))
        graph = graph_of_atoms(atoms, self.cutoff)
        edge_index = torch.as_tensor(graph.edge_index, device=self.device)
        edge_vec = torch.as_tensor(graph.edge_vec, dtype=self.dtype, device=self.device)
        _, atom_energy, grad = self(
            torch.as_tensor(species, device=self.device), edge_index, edge_vec, len(atoms)
        )
        # forces and virial in double precision, as the C++ runtime does
        grad, edge_vec = grad.detach().double(), edge_vec.double()
        edge_graph = torch.zeros(graph.num_edges, dtype=torch.long, device=self.device)
        out = {
            K.ATOM_ENERGY: atom_energy.detach(),
            K.FORCES: forces_from_edge_gradient(grad, edge_index, len(atoms)),
            K.VIRIAL: virial_from_edge_gradient(grad, edge_vec, edge_graph, 1),
        }
        return results_from_outputs(out, abs(atoms.cell.volume))
