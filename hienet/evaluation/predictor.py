"""Batched predictions of any HIENet model on many ASE structures.

Several structures are joined into one disjoint graph (node indices offset, a `batch` vector
assigning atoms to structures) and evaluated in one forward and one backward pass. The
outputs equal `HIENetCalculator` structure by structure up to summation order:

    predictor = Predictor("si-demo", device="cpu", dtype="float64")
    for p in predictor.predict(frames, batch_size=16):
        p.energy, p.energies, p.forces, p.stress      # eV, eV, eV/Å, eV/Å³ (ASE Voigt) or None

Models are loaded as `HIENetCalculator` loads them (our checkpoint, official checkpoint,
exported file, bundled name). An exported file takes any graph and returns per-atom
energies and edge gradients (export/FORMAT.md), so it is batched the same way.
"""
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from ..ase_convert import species_indices, voigt
from ..calculator import HIENetCalculator
from ..ensemble import member_outputs
from ..graph import graph_of_atoms
from ..graph import keys as K


@dataclass
class Prediction:
    """One structure's results in ASE units and conventions."""

    energy: float
    energies: np.ndarray           # (N,) eV
    forces: np.ndarray             # (N, 3) eV/Å
    stress: Optional[np.ndarray]   # (6,) eV/Å³, ASE sign and Voigt order; None without a volume


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; a clear error without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
    return device


class Predictor:
    """A loaded model plus batched evaluation; `model` is anything `HIENetCalculator` accepts."""

    def __init__(self, model: Union[str, torch.nn.Module], device: str = "cpu", dtype: str = "float64"):
        self.calculator = HIENetCalculator(model, device=resolve_device(str(device)), dtype=dtype)
        self.species: List[str] = self.calculator.species
        self.cutoff: float = self.calculator.cutoff
        self.device = self.calculator.device
        deployed = self.calculator.deployed
        self.dtype = deployed.dtype if deployed is not None else self.calculator.dtype
        self.kind = "exported" if deployed is not None else "eager"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def predict(self, frames: Sequence, batch_size: int = 16, progress=None,
                source: str = "structure") -> List[Prediction]:
        """Predictions for `frames`, `batch_size` structures per forward pass.

        `progress` is called with the number of structures done after each batch (e.g. a
        tqdm bar's `update`). An element the model lacks is an error naming `source` and index.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out: List[Prediction] = []
        for start in range(0, len(frames), batch_size):
            chunk = list(range(start, min(start + batch_size, len(frames))))
            out.extend(self._predict_batch([frames[i] for i in chunk], [f"{source} {i}" for i in chunk]))
            if progress is not None:
                progress(len(chunk))
        return out

    # ------------------------------------------------------------------------------------------
    def _predict_batch(self, frames: Sequence, names: Sequence[str]) -> Iterator[Prediction]:
        species_t, edge_index_t, edge_vec_t, batch, num_atoms = self.joined_graph(frames, names)
        atom_energy, forces, virial = self._evaluate(species_t, edge_index_t, edge_vec_t, batch, len(frames))
        atom_energy = atom_energy.detach().double().cpu().numpy()
        forces = forces.detach().double().cpu().numpy()
        virial = virial.detach().double().cpu().numpy()
        bounds = np.concatenate([[0], np.cumsum(num_atoms)])
        for b, atoms in enumerate(frames):
            lo, hi = bounds[b], bounds[b + 1]
            energies = atom_energy[lo:hi]
            volume = abs(atoms.cell.volume)
            stress = None
            if volume > 0:
                sigma = -virial[b] / volume
                stress = voigt(0.5 * (sigma + sigma.T))
            yield Prediction(float(energies.sum()), energies.copy(), forces[lo:hi].copy(), stress)

    def joined_graph(self, frames: Sequence, names: Sequence[str]):
        """(species, edge_index, edge_vec, batch, num_atoms) of `frames` as one disjoint graph."""
        species, edge_index, edge_vec, num_atoms = [], [], [], []
        offset = 0
        for atoms, name in zip(frames, names):
            graph = graph_of_atoms(atoms, self.cutoff)
            species.append(species_indices(atoms.get_chemical_symbols(), self.species,
                                           f"the model (needed by {name})"))
            edge_index.append(graph.edge_index + offset)
            edge_vec.append(graph.edge_vec)
            num_atoms.append(len(atoms))
            offset += len(atoms)
        dev = self.device
        species_t = torch.as_tensor(np.concatenate(species), dtype=torch.long, device=dev)
        edge_index_t = torch.as_tensor(np.concatenate(edge_index, axis=1), dtype=torch.long, device=dev)
        edge_vec_t = torch.as_tensor(np.concatenate(edge_vec), dtype=self.dtype, device=dev)
        counts = torch.as_tensor(num_atoms, dtype=torch.long, device=dev)
        batch = torch.repeat_interleave(torch.arange(len(frames), device=dev), counts)
        return species_t, edge_index_t, edge_vec_t, batch, num_atoms

    def _evaluate(self, species, edge_index, edge_vec, batch, num_graphs: int):
        """(atom_energy (N,), forces (N, 3), virial (B, 3, 3)) of a batched graph."""
        out = member_outputs(self.calculator, species, edge_index, edge_vec, batch, num_graphs)
        return out[K.ATOM_ENERGY], out[K.FORCES], out[K.VIRIAL]



def with_smooth_invariant(model, smooth: bool):
    """The same weights with `smooth_invariant` set to `smooth` (an eager `HIENet`, float64).

    `model` is a path or bundled name of a checkpoint (ours or official) or a `HIENet` (returned
    as it is when it already has that setting); an exported file fixes its network and cannot
    be changed.
    """
    from ..checkpoint import _require_file, is_exported_model, load_model
    from ..calculator import resolve_model_path
    from ..model import HIENet

    if not isinstance(model, torch.nn.Module):
        path = _require_file(resolve_model_path(str(model)))
        if is_exported_model(path):
            raise ValueError(f"{path} is an exported file, whose network is fixed: smooth_invariant can only "
                             "be changed on a checkpoint (ours or official)")
        model = load_model(path, dtype=torch.float64)
    if bool(model.config["smooth_invariant"]) == bool(smooth):
        return model
    variant = HIENet({**model.config, "smooth_invariant": bool(smooth)}).to(torch.float64)
    variant.load_state_dict(model.state_dict())
    return variant.eval()
