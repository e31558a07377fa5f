"""Files and tables written by `hienet-eval`: predictions as extxyz, summaries as JSON/CSV.

The predictions extxyz keeps every structure as read (its labels stay where they were, e.g.
extxyz `energy=`, `forces`, `stress`) and adds the model's values next to them:

    info["hienet_energy"]      eV
    arrays["hienet_energies"]  (N,) eV, per-atom energies
    arrays["hienet_forces"]    (N, 3) eV/Å
    info["hienet_stress"]      (6,) eV/Å³, ASE sign and Voigt order (cells with a volume)
"""
import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from .metrics import QUANTITIES, UNITS, Labels
from .predictor import Prediction

PREFIX = "hienet_"


def write_predictions(frames: Sequence, predictions: Sequence[Prediction], path) -> Path:
    import ase.io

    for atoms, p in zip(frames, predictions):
        atoms.info[PREFIX + "energy"] = p.energy
        atoms.arrays[PREFIX + "energies"] = p.energies
        atoms.arrays[PREFIX + "forces"] = p.forces
        if p.stress is not None:
            atoms.info[PREFIX + "stress"] = p.stress
    ase.io.write(path, list(frames), format="extxyz")
    return Path(path)


def _clean(value):
    """JSON without NaN (null instead)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def write_json(data: Dict, path) -> Path:
    Path(path).write_text(json.dumps(_clean(data), indent=1, ensure_ascii=False) + "\n")
    return Path(path)


def summary_rows(summary: Dict) -> List[Dict]:
    """Flat rows (group, name, quantity, unit, mae, rmse, max_abs, count) of a metrics summary."""
    rows = []

    def add(group, name, stats_by_quantity):
        for q in QUANTITIES:
            if q in stats_by_quantity:
                s = stats_by_quantity[q]
                rows.append({"group": group, "name": name, "quantity": q, "unit": s["unit"], "mae": s["mae"],
                             "rmse": s["rmse"], "max_abs": s["max_abs"], "count": s["count"]})

    add("overall", "all", summary["overall"])
    for element, stats in summary["per_element"].items():
        add("element", element, stats)
    for kind, stats in summary["per_type"].items():
        add("type", kind, stats)
    return rows


def write_csv(rows: Sequence[Dict], path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def structure_rows(frames: Sequence, labels: Sequence[Labels], predictions: Sequence[Prediction],
                   types: Sequence[str]) -> List[Dict]:
    """One row per structure, to find the worst ones."""
    rows = []
    for i, (atoms, lab, p, kind) in enumerate(zip(frames, labels, predictions, types)):
        n = len(atoms)
        df = (p.forces - lab.forces) * 1e3
        row = {"index": i, "type": kind, "num_atoms": n, "formula": atoms.get_chemical_formula(),
               "energy_ref_eV": lab.energy, "energy_pred_eV": p.energy,
               "energy_error_meV_per_atom": (p.energy - lab.energy) / n * 1e3,
               "force_mae_meV_per_A": float(np.abs(df).mean()), "force_max_error_meV_per_A": float(np.abs(df).max()),
               "stress_mae_GPa": ""}
        if lab.stress is not None and p.stress is not None:
            row["stress_mae_GPa"] = float(np.abs(p.stress - lab.stress).mean() * UNITS["stress"][1])
        rows.append(row)
    return rows


def format_summary(summary: Dict) -> str:
    """The table printed by `hienet-eval`."""
    lines = [f"{'':<22}{'quantity':<17}{'MAE':>12}{'RMSE':>12}  {'unit':<9}{'count':>9}"]
    for row in summary_rows(summary):
        label = {"overall": "all", "element": f"element {row['name']}", "type": f"type {row['name']}"}[row["group"]]
        lines.append(f"{label[:21]:<22}{row['quantity']:<17}{row['mae']:>12.6g}{row['rmse']:>12.6g}  "
                     f"{row['unit']:<9}{row['count']:>9}")
    return "\n".join(lines)
