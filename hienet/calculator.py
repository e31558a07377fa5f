"""ASE calculator for HIENet models (checkpoints, official checkpoints, exported files)."""
from typing import List, Optional, Sequence, Union

import torch
from ase.calculators.calculator import Calculator, all_changes

from .allocator import configure_allocator
from .ase_convert import results_from_outputs, species_indices
from .devices import resolve_device
from .ensemble import DEVIATION_PROPERTIES, check_compatible, ensemble_results
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

    Ensemble: a list of models (`HIENetCalculator(["m1.pt", "m2.pt", ...])`, any kinds above,
    sharing cutoff, species and dtype) gives the FIRST model's energy, forces and stress (as
    `pair_style hienet m1.pt m2.pt ... deviation` drives MD with the first) plus its model
    deviation over all models, evaluated on one graph: `force_deviation` (per atom, eV/Å),
    `energy_deviation` (eV/atom), `virial_deviation` (3x3, eV/atom) and `model_deviation` (the
    7 values of a model_devi.out line); definitions in `hienet/ensemble.py`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Union[str, torch.nn.Module, Sequence] = "si-demo",
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
        self.members = None
        if isinstance(model, (list, tuple)):
            self._load_ensemble(model, device, dtype, convolution)
            return
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

    def _load_ensemble(self, models, device, dtype, convolution):
        if not models:
            raise ValueError("HIENetCalculator got an empty list of models")
        self.members = [HIENetCalculator(m, device=device, dtype=dtype, convolution=convolution)
                        for m in models]
        check_compatible(self.members)
        first = self.members[0]
        self.model, self.deployed, self.source = first.model, first.deployed, first.source
        self.species, self.cutoff = first.species, first.cutoff
        self.implemented_properties = list(self.implemented_properties) + list(DEVIATION_PROPERTIES)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.members is not None:
            self.results.update(ensemble_results(self.members, self.atoms))
            return
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

