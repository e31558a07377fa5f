"""ASE calculator for HIENet models (checkpoints, official checkpoints, exported files)."""
from typing import List, Optional, Union

import torch
from ase.calculators.calculator import Calculator, all_changes

from .allocator import configure_allocator
from .ase_convert import results_from_outputs, species_indices
from .devices import resolve_device
from .graph import graph_of_atoms
from .model.forces import evaluate

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    device: 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device (an error if CUDA is asked for
        and torch sees no GPU).
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
        self.device = resolve_device(device)
        self.dtype = _DTYPES[dtype]
        configure_allocator()  # every step's tensors reuse the heap (hienet/allocator.py)
        self.deployed = None
        if isinstance(model, torch.nn.Module):
            self.model = model.to(dtype=self.dtype, device=self.device).eval()
            self.source = f"the {type(model).__name__} module"
        else:
            from .checkpoint import is_exported_model, load_model, _require_file

            path = _require_file(resolve_model_path(str(model)))
            self.source = f"model {path}"
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
        species = species_indices(atoms.get_chemical_symbols(), self.species, self.source)
        graph = graph_of_atoms(atoms, self.cutoff)
        as_tensor = lambda a, dt: torch.as_tensor(a, dtype=dt, device=self.device)  # noqa: E731
        out = evaluate(
            self.model,
            as_tensor(species, torch.long),
            as_tensor(graph.edge_index, torch.long),
            as_tensor(graph.edge_vec, self.dtype),
        )
        self.results.update(results_from_outputs(out, abs(atoms.cell.volume),
                                                 atoms.get_chemical_symbols(), self.source))

