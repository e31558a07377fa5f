"""Evaluate a file written by `hienet-export` on ASE structures (Python twin of `cpp/`).

    model = DeployedModel("model.pt")
    results = model.evaluate(atoms)   # energy, free_energy, energies, forces, stress (ASE units)
"""
import json
from pathlib import Path
from typing import Any, Dict

import torch

from .allocator import configure_allocator
from .ase_convert import results_from_outputs, species_indices
from .devices import resolve_device
from .graph import graph_of_atoms
from .graph import keys as K
from .integrity import DIGEST_KEY, verify_archive

FORMAT_VERSION = 2
METADATA_FILE = "metadata.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def read_metadata(path) -> Dict[str, Any]:
    """The metadata of an exported file, without loading the model code."""
    import zipfile

    from .checkpoint import PICKLE, TORCHSCRIPT, file_kind

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an exported HIENet model (not a zip archive; truncated or damaged?)")
    kind = file_kind(path)
    if kind == TORCHSCRIPT:
        raise ValueError(f"{path} is a TorchScript file but not written by hienet-export (it has no "
                         f"extra/{METADATA_FILE}); export a HIENet checkpoint with hienet-export")
    if kind == PICKLE:
        raise ValueError(f"{path} is a torch.save file (a checkpoint?), not a model written by "
                         "hienet-export; load it with HIENetCalculator or export it with hienet-export")
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.split("/", 1)[-1] == "extra/" + METADATA_FILE)
            meta = json.loads(archive.read(name))
    except (zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"{path}: unreadable {METADATA_FILE} ({err}); re-export it with hienet-export") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: {METADATA_FILE} is not a JSON object; re-export it with hienet-export")
    check_metadata(meta, path)
    return meta


def check_metadata(meta: Dict[str, Any], path) -> None:
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported HIENet model format version {version!r} in {path} (this hienet reads "
            f"{FORMAT_VERSION}); re-export it with this version's hienet-export"
        )
    required = ("cutoff", "species", "dtype", "num_message_passing_layers", "exchange_widths")
    for key in required + (DIGEST_KEY,):
        if key not in meta:
            raise ValueError(f"{path}: metadata lacks {key!r}")
    if meta["dtype"] not in _DTYPES:
        raise ValueError(f"{path}: metadata dtype {meta['dtype']!r} is not float32/float64")


def check_outputs(out, n_local: int, num_edges: int, path) -> None:
    """ValueError naming `path` unless `out` is FORMAT.md's (energy, atom_energy, edge_grad)."""
    expected = (f"(energy [], atom_energy [{n_local}], edge_grad [{num_edges}, 3]) tensors "
                "(export/FORMAT.md); re-export it with hienet-export")
    if not (isinstance(out, (tuple, list)) and len(out) == 3 and all(isinstance(t, torch.Tensor) for t in out)):
        what = (f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list))
                else f"a {type(out).__name__}")
        raise ValueError(f"exported model {path}: forward() returned {what}; expected {expected}")
    energy, atom_energy, edge_grad = out
    shapes = [list(t.shape) for t in out]
    if energy.numel() != 1 or atom_energy.shape != (n_local,) or edge_grad.shape != (num_edges, 3):
        raise ValueError(f"exported model {path}: forward() returned shapes {shapes}; expected {expected}")


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
        self.device = resolve_device(device)
        configure_allocator()  # as the C++ runtime does (cpp/include/hienet/allocator.h)
        self.metadata = read_metadata(self.path)
        verify_archive(self.path, self.metadata)
        require_custom_ops(self.metadata, self.path)
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"cannot load exported model {self.path} as TorchScript ({message}); "
                             "re-export it with hienet-export") from None
        self.species = list(self.metadata["species"])
        self.cutoff = float(self.metadata["cutoff"])
        self.dtype = _DTYPES[self.metadata["dtype"]]

    def __call__(self, species, edge_index, edge_vec, n_local: int):
        """The raw module call: (energy, atom_energy, edge_grad), see export/FORMAT.md.

        Run by TorchScript's plain interpreter (no profiling executor), as the C++ runtime
        does: its specialised autodiff graphs are slower than eager autograd for this model
        and re-profile on the first calls (export/FORMAT.md, "Evaluation"). ValueError naming
        the file if the outputs do not have FORMAT.md's types and shapes."""
        try:
            with torch.jit.optimized_execution(False):
                out = self.module(species, edge_index, edge_vec, n_local)
        except Exception as err:  # TorchScript raises torch.jit.Error / RuntimeError
            message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise RuntimeError(f"evaluation of exported model {self.path} failed: {message}") from None
        check_outputs(out, n_local, edge_index.shape[1], self.path)
        return out

    def evaluate(self, atoms) -> Dict[str, Any]:
        """ASE results (energy, free_energy, energies, forces, stress when the cell has a volume)."""
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
        return results_from_outputs(out, abs(atoms.cell.volume), atoms.get_chemical_symbols(),
                                    f"exported model {self.path}")
