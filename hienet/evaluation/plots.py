"""PNG figures: parity plots, error histograms, training curves and diatomic curves.

matplotlib's object interface with the Agg canvas (no pyplot, no global backend switch, so
importing this module changes nothing in a user's interactive session). Every figure is
made of square panels of PANEL_INCHES at DPI, so a figure of r × c panels is exactly
c·PANEL_PX × r·PANEL_PX pixels.
"""
import csv
import math
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from .metrics import UNITS, Comparison

PANEL_INCHES = 4.0
DPI = 120
PANEL_PX = int(PANEL_INCHES * DPI)

_LABELS = {
    "energy_per_atom": ("energy", "eV/atom", 1.0),
    "forces": ("force components", "eV/Å", 1.0),
    "stress": ("stress components", "GPa", UNITS["stress"][1]),
}


def _figure(rows: int, cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the pixel size stays fixed
    return path


def _stats_text(errors: np.ndarray, unit: str) -> str:
    return f"MAE {np.abs(errors).mean():.4g} {unit}\nRMSE {np.sqrt((errors**2).mean()):.4g} {unit}"


def parity_plot(comparison: Comparison, path, title: str = "") -> Path:
    """Predicted against reference energy per atom, force and stress components (one panel each)."""
    quantities = [q for q in _LABELS if q in comparison.ref]
    fig, axes = _figure(1, len(quantities))
    for ax, q in zip(axes[0], quantities):
        name, unit, factor = _LABELS[q]
        ref, pred = comparison.ref[q] * factor, comparison.pred[q] * factor
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=0.8, zorder=0)
        ax.scatter(ref, pred, s=4, alpha=0.4, linewidths=0, color="tab:blue", rasterized=True)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"predicted {name} ({unit})")
        ax.text(0.04, 0.96, _stats_text(comparison.errors(q), UNITS[q][0]), transform=ax.transAxes,
                va="top", fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        ax.set_title(f"{name} ({len(ref)} values)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def error_histogram(comparison: Comparison, path, title: str = "", bins: int = 60) -> Path:
    """Distribution of the errors (predicted − reference) of each quantity, log counts."""
    quantities = [q for q in _LABELS if q in comparison.ref]
    fig, axes = _figure(1, len(quantities))
    for ax, q in zip(axes[0], quantities):
        errors = comparison.errors(q)
        unit = UNITS[q][0]
        ax.hist(errors, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)  # single counts stay visible
        ax.axvline(0.0, color="0.4", lw=0.8)
        ax.set_xlabel(f"{_LABELS[q][0]} error ({unit})")
        ax.set_ylabel("count")
        ax.text(0.96, 0.96, _stats_text(errors, unit), transform=ax.transAxes, ha="right", va="top",
                fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# training curve (the trainer's metrics.csv)
# --------------------------------------------------------------------------------------------
_CURVE_PANELS = [  # (title, column suffix, y label, log scale)
    ("loss", "loss", "loss", True),
    ("energy MAE", "E_mae_meV_per_atom", "meV/atom", True),
    ("force MAE", "F_mae_meV_per_A", "meV/Å", True),
    ("stress MAE", "S_mae_GPa", "GPa", True),
]


def read_metrics_csv(path) -> Dict[str, np.ndarray]:
    """Columns of a trainer metrics.csv as float arrays (empty cells → NaN)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{path} is not a hienet-train metrics.csv (no 'epoch' column or no rows)")

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {key: np.array([number(r.get(key)) for r in rows]) for key in rows[0]}


def training_curve(metrics_csv, path, title: Optional[str] = None) -> Path:
    """Loss and validation/training MAEs per epoch from `metrics_csv` (epoch 0 = initial model)."""
    columns = read_metrics_csv(metrics_csv)
    epochs = columns["epoch"]
    fig, axes = _figure(1, len(_CURVE_PANELS))
    for ax, (name, suffix, ylabel, log) in zip(axes[0], _CURVE_PANELS):
        drawn = False
        for prefix, style in (("train_", "-"), ("val_", "--")):
            values = columns.get(prefix + suffix)
            if values is None:
                continue
            ok = np.isfinite(values) & (values > 0 if log else True)
            if ok.any():
                ax.plot(epochs[ok], values[ok], style, marker=".", ms=3, label=prefix.rstrip("_").replace("val", "validation"))
                drawn = True
        if log and drawn:
            ax.set_yscale("log")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title if title is not None else str(metrics_csv), fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# diatomic curves
# --------------------------------------------------------------------------------------------
def diatomic_grid(curves: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], path, cutoff: float,
                  title: str = "") -> Path:
    """E(r) (solid, left axis) and F(r) (dotted, right axis) of each pair, one panel per pair.

    `curves[variant][pair]` holds arrays `r`, `energy` (relative to the isolated atoms) and
    `force` (along the bond, positive = repulsive); several variants share each panel.
    """
    variants = list(curves)
    pairs = list(curves[variants[0]])
    cols = min(len(pairs), max(1, math.ceil(math.sqrt(len(pairs)))))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = _figure(rows, cols)
    colors = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    for k, pair in enumerate(pairs):
        ax = axes[k // cols][k % cols]
        fax = ax.twinx()
        emins = []
        for v, variant in enumerate(variants):
            c = curves[variant][pair]
            color = colors[v % len(colors)]
            ax.plot(c["r"], c["energy"], "-", color=color, lw=1.2, label=f"E {variant}")
            fax.plot(c["r"], c["force"], ":", color=color, lw=1.0, label=f"F {variant}")
            emins.append(float(np.min(c["energy"])))
        low = min(min(emins) * 1.3, -0.5)
        ax.set_ylim(low, max(2.0, -2.0 * low))
        fax.set_ylim(5 * low, 5 * max(2.0, -2.0 * low))
        ax.axhline(0.0, color="0.7", lw=0.6)
        ax.axvline(cutoff, color="0.6", lw=0.6, ls="--")
        ax.set_title(pair, fontsize=10)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("E − E(∞) (eV)")
        fax.set_ylabel("F (eV/Å)", fontsize=8)
        if k == 0:
            handles = ax.get_legend_handles_labels()
            fhandles = fax.get_legend_handles_labels()
            ax.legend(handles[0] + fhandles[0], handles[1] + fhandles[1], fontsize=7, loc="upper right")
    for k in range(len(pairs), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)

