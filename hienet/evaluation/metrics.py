"""Test-set errors: MAE and RMSE of energy per atom, forces and stress.

The same definitions as the trainer's validation metrics (`hienet.train.loss.ErrorMetrics`):

    energy   (E_pred − E_ref) / N per structure                        meV/atom
    forces   every Cartesian component of every atom                    meV/Å
    stress   the 6 Voigt components of the symmetric part, structures   GPa
             that carry a stress label and have a cell volume

Errors are reported overall, per element (forces of the atoms of that element) and per
structure type (the value of an `atoms.info` key such as extxyz `config_type`).
Labels are read with the trainer's reader (`hienet.train.dataset.labels_of`).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..train.config import STRESS_UNITS
from ..train.dataset import labels_of
from .predictor import Prediction

# quantity: (unit, factor from ASE units)
UNITS = {
    "energy_per_atom": ("meV/atom", 1e3),
    "forces": ("meV/Å", 1e3),
    "stress": ("GPa", STRESS_UNITS["GPa"]),
}
QUANTITIES = tuple(UNITS)
UNTYPED = "(none)"  # structure type of structures without the type key


@dataclass
class Labels:
    """Reference values of one structure (ASE units; stress in ASE Voigt order or None)."""

    energy: float
    forces: np.ndarray
    stress: Optional[np.ndarray]


def reference_labels(frames: Sequence, source: str, energy_key=None, forces_key=None,
                     stress_key=None) -> List[Labels]:
    """Labels of every structure; a missing energy or forces is an error naming file and index."""
    out = []
    for i, atoms in enumerate(frames):
        energy, forces, stress = labels_of(atoms, f"{source} structure {i}", energy_key, forces_key, stress_key)
        has_volume = atoms.cell.rank == 3 and abs(atoms.cell.volume) > 0
        if stress is not None and has_volume:
            sym = 0.5 * (stress + stress.T)
            stress = np.array([sym[0, 0], sym[1, 1], sym[2, 2], sym[1, 2], sym[0, 2], sym[0, 1]])
        else:
            stress = None
        out.append(Labels(energy, forces, stress))
    return out


@dataclass
class Comparison:
    """Reference and predicted values of a data set, flattened per quantity (ASE units).

    `ref[q]`, `pred[q]` are 1-D arrays; `elements[q]` and `types[q]` give the element (forces
    only, else '') and structure type of each entry.
    """

    ref: Dict[str, np.ndarray] = field(default_factory=dict)
    pred: Dict[str, np.ndarray] = field(default_factory=dict)
    types: Dict[str, np.ndarray] = field(default_factory=dict)
    elements: Dict[str, np.ndarray] = field(default_factory=dict)

    def errors(self, quantity: str) -> np.ndarray:
        """pred − ref in display units (meV/atom, meV/Å, GPa)."""
        return (self.pred[quantity] - self.ref[quantity]) * UNITS[quantity][1]


def structure_types(frames: Sequence, type_key: Optional[str]) -> List[str]:
    if not type_key:
        return [UNTYPED] * len(frames)
    return [str(atoms.info.get(type_key, UNTYPED)) for atoms in frames]


def compare(frames: Sequence, labels: Sequence[Labels], predictions: Sequence[Prediction],
            types: Sequence[str]) -> Comparison:
    if not (len(frames) == len(labels) == len(predictions) == len(types)):
        raise ValueError("frames, labels, predictions and types differ in length")
    rows = {q: {"ref": [], "pred": [], "types": [], "elements": []} for q in QUANTITIES}

    def add(q, ref, pred, kind, elements):
        r = rows[q]
        r["ref"].append(np.ravel(ref))
        r["pred"].append(np.ravel(pred))
        r["types"].append(np.full(np.size(ref), kind, dtype=object))
        r["elements"].append(np.ravel(elements).astype(object))

    for atoms, lab, p, kind in zip(frames, labels, predictions, types):
        n = len(atoms)
        add("energy_per_atom", lab.energy / n, p.energy / n, kind, [""])
        symbols = np.repeat(np.array(atoms.get_chemical_symbols(), dtype=object), 3)
        add("forces", lab.forces, p.forces, kind, symbols)
        if lab.stress is not None and p.stress is not None:
            add("stress", lab.stress, p.stress, kind, [""] * 6)
    out = Comparison()
    for q, r in rows.items():
        if r["ref"]:
            out.ref[q] = np.concatenate(r["ref"]).astype(float)
            out.pred[q] = np.concatenate(r["pred"]).astype(float)
            out.types[q] = np.concatenate(r["types"])
            out.elements[q] = np.concatenate(r["elements"])
    return out


def error_stats(errors: np.ndarray, unit: str) -> Dict[str, float]:
    errors = np.asarray(errors, dtype=float)
    return {
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "max_abs": float(np.abs(errors).max()),
        "count": int(errors.size),
        "unit": unit,
    }


def summarize(comparison: Comparison) -> Dict[str, Dict]:
    """{"overall": {quantity: stats}, "per_element": {El: {"forces": stats}},
    "per_type": {type: {quantity: stats}}}; stats = mae, rmse, max_abs, count, unit."""
    summary = {"overall": {}, "per_element": {}, "per_type": {}}
    for q in QUANTITIES:
        if q not in comparison.ref:
            continue
        unit = UNITS[q][0]
        errors = comparison.errors(q)
        summary["overall"][q] = error_stats(errors, unit)
        kinds = comparison.types[q]
        for kind in sorted(set(kinds)):
            summary["per_type"].setdefault(kind, {})[q] = error_stats(errors[kinds == kind], unit)
    if "forces" in comparison.ref:
        elements = comparison.elements["forces"]
        errors = comparison.errors("forces")
        for element in _in_periodic_order(set(elements)):
            summary["per_element"][element] = {"forces": error_stats(errors[elements == element], UNITS["forces"][0])}
    if set(summary["per_type"]) == {UNTYPED}:
        summary["per_type"] = {}
    return summary


def _in_periodic_order(symbols) -> List[str]:
    from ase.data import atomic_numbers

    return sorted(symbols, key=lambda s: atomic_numbers.get(s, 0))
