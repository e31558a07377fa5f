"""ASE calculator for HIENet models (checkpoints, official checkpoints, exported files)."""
from typing import List, Optional, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .graph import graph_of_atoms
from .graph import keys as K
from .model.forces import evaluate

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def species_indices(symbols: List[str], model_species: List[str], source: str = "the model"):
    """Map chemical symbols to the model's species indices, naming any element it lacks."""
    index = {s: i for i, s in enumerate(model_species)}
    missing = sorted(set(symbols) - set(index))
    if missing:
        raise ValueError(
            f"element(s) {', '.join(missing)} not in {source}; it knows {', '.join(model_species)}"
        )
    return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))


def resolve_model_path(model: str) -> str:
    """A bundled model name (e.g. 'si-demo') or a path."""
    from .pretrained import bundled_model_path

    return bundled_model_path(model) or model


class HIENetCalculator(Calculator):
    """HIENet energies, per-atom energies, forces and stress (ASE units: eV, Å, eV/Å³).

    Parameters
    ----------
    model: path to our checkpoint, an official HIENet checkpoint, a file written by
        `hienet-export`, a bundled model name (`si-demo`), or a `HIENet` module.
    device: 'cpu', 'cuda' or a torch.device.
    dtype: 'float32' or 'float64' (ignored for exported files, which fix their dtype).
    convolution: kernel of the equivariant convolution for checkpoints and modules: 'fused'
        (the hienet::convolution operator), 'e3nn' (the reference) or 'auto' (fused when the
        operator library loads); None keeps the model's setting (config key 'convolution',
        default 'auto'). Exported files fix theirs at export (`hienet-export --convolution`).

    Stress (ASE sign, Voigt xx yy zz yz xz xy) is reported when the cell has a volume, also for
    non-periodic directions (the cell volume is used then).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Union[str, torch.nn.Module] = "si-demo",
        device: Union[str, torch.device] = "cpu",
        dtype: str = "float64",
        convolution: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = _DTYPES[dtype]
        self.deployed = None
        if isinstance(model, torch.nn.Module):
            self.model = model.to(dtype=self.dtype, device=self.device).eval()
        else:
            from .checkpoint import is_exported_model, load_model, _require_file

            path = _require_file(resolve_model_path(str(model)))
            if is_exported_model(path):
                from .deploy import DeployedModel

                self.deployed = DeployedModel(path, device=self.device)
                self.model = None
            else:
                self.model = load_model(path, dtype=self.dtype, device=self.device)
        if convolution is not None and self.model is not None:
            self.model.set_convolution(convolution)
        if self.deployed is not None:
            self.species = list(self.deployed.species)
            self.cutoff = self.deployed.cutoff
        else:
            self.species = list(self.model.species)
            self.cutoff = float(self.model.cutoff)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.deployed is not None:
            self.results.update(self.deployed.evaluate(self.atoms))
            return
        atoms = self.atoms
        species = species_indices(atoms.get_chemical_symbols(), self.species)
        graph = graph_of_atoms(atoms, self.cutoff)
        as_tensor = lambda a, dt: torch.as_tensor(a, dtype=dt, device=self.device)  # noqa: E731
        volume = abs(atoms.cell.volume)
        out = evaluate(
            self.model,
            as_tensor(species, torch.long),
            as_tensor(graph.edge_index, torch.long),
            as_tensor(graph.edge_vec, self.dtype),
        )
        self.results.update(results_from_outputs(out, volume))


def results_from_outputs(out, volume: float) -> dict:
    """ASE results from model outputs (double precision, Voigt stress when V > 0)."""
    energies = out[K.ATOM_ENERGY].detach().double().cpu().numpy()
    energy = float(energies.sum())
    results = {
        "energy": energy,
        "free_energy": energy,
        "energies": energies,
        "forces": out[K.FORCES].detach().double().cpu().numpy(),
    }
    if volume > 0:
        sigma = -out[K.VIRIAL][0].detach().double().cpu().numpy() / volume
        results["stress"] = voigt(0.5 * (sigma + sigma.T))
    return results


def voigt(tensor: np.ndarray) -> np.ndarray:
    """3×3 → ASE Voigt order [xx, yy, zz, yz, xz, xy]."""
    return np.array(
        [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[1, 2], tensor[0, 2], tensor[0, 1]]
    )
