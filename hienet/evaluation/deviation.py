"""Model deviation of an ensemble on the frames of a trajectory (`hienet-eval --ensemble`).

    hienet-eval m1.pt traj.dump --ensemble m2.pt m3.pt m4.pt --type-map Si,O --select 0.05 0.3 -o devi/

MODEL drives (as in `pair_style hienet m1.pt m2.pt ... deviation`), --ensemble lists the
others. DATA is an extxyz (any ase.io format) or a LAMMPS text dump: a dump has atom types,
not elements, so it needs an `element` column (`dump ... custom ... element` with
`dump_modify ... element Si O`) or `--type-map Si,O` (the elements of types 1, 2, ...).
Each frame is evaluated by every model on one graph (frames batched into one disjoint
graph); the deviations are those of hienet/ensemble.py, in eV and Å. Written to the output
directory:

* model_devi.out: one line per frame in the layout of pair_style hienet's deviation file
  (DeePMD-kit's model_devi.out columns + devi_e; `--atomic`: σ_i of every atom after them);
  step = the dump's timestep, else the frame's info["step"], else its index;
* deviation.png: histogram of max_devi_f over the frames (log counts), with the window;
* candidates.extxyz (`--select LO HI`): the frames with LO <= max_devi_f < HI, the DP-GEN
  "candidate" window, to be labelled (structure only, plus info step/max_devi_f/source_frame
  and the per-atom force_deviation array); frames below LO are "accurate", at or above HI
  "failed" (too far from the training data to trust, usually not labelled);
* deviation.json: the counts and the settings.
"""
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..ase_convert import check_finite
from ..ensemble import COLUMNS, Deviation, check_compatible, member_outputs, model_deviation
from ..graph import keys as K
from .frames import frame_steps, parse_type_map, progress_bar, read_frames

DEVIATION_FILE = "model_devi.out"


# -------------------------------------------------------------------------------------------
# evaluation
# -------------------------------------------------------------------------------------------
def ensemble_deviations(predictors: Sequence, names: Sequence[str], frames: Sequence, batch_size: int = 16,
                        relative: Optional[float] = None, progress: Optional[Callable] = None,
                        source: str = "frame") -> List[Deviation]:
    """The deviation of every frame; `predictors` (hienet.evaluation.Predictor, one per model,
    called `names`) share one graph per batch of frames."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_compatible([p.calculator for p in predictors], names)
    deviations: List[Deviation] = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        frame_names = [f"{source} {start + b}" for b in range(len(chunk))]
        species, edge_index, edge_vec, batch, num_atoms = predictors[0].joined_graph(chunk, frame_names)
        outputs = []
        for p in predictors:
            out = member_outputs(p.calculator, species, edge_index, edge_vec, batch, len(chunk))
            outputs.append({k: v.detach().double().cpu().numpy() for k, v in out.items()})
        bounds = np.concatenate([[0], np.cumsum(num_atoms)])
        for b, atoms in enumerate(chunk):
            lo, hi = bounds[b], bounds[b + 1]
            symbols = atoms.get_chemical_symbols()
            for name, out in zip(names, outputs):
                check_finite(out[K.ATOM_ENERGY][lo:hi], out[K.FORCES][lo:hi], symbols,
                             f"model {name} on {frame_names[b]}")
            deviations.append(model_deviation(
                [o[K.ATOM_ENERGY][lo:hi].sum() for o in outputs],
                [o[K.FORCES][lo:hi] for o in outputs],
                [o[K.VIRIAL][b] for o in outputs],
                relative,
            ))
        if progress is not None:
            progress(len(chunk))
    return deviations


# -------------------------------------------------------------------------------------------
# outputs
# -------------------------------------------------------------------------------------------
def write_model_devi(path, steps: Sequence[int], deviations: Sequence[Deviation], atomic: bool = False) -> Path:
    """model_devi.out in the layout of pair_style hienet's deviation file."""
    path = Path(path)
    header = f"#{'step':>11}" + "".join(f"{c:>19}" for c in COLUMNS)
    if atomic:
        header += f"{'atm_devi_f(N)':>19}"
    lines = [header]
    for step, d in zip(steps, deviations):
        values = list(d.row) + (list(d.atom_devi_f) if atomic else [])
        lines.append(f"{int(step):>12d}" + "".join(f" {v:>18.10e}" for v in values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_model_devi(path) -> np.ndarray:
    """The table of a model_devi.out (ours or DeePMD-kit's): one row per line, step first."""
    return np.atleast_2d(np.loadtxt(path, comments="#"))


def deviation_histogram(max_devi_f: np.ndarray, path, window=None, title: str = "", bins: int = 60) -> Path:
    """Histogram of max_devi_f over frames (log counts), with the [LO, HI) window shaded."""
    from .plots import _figure, _save

    fig, axes = _figure(1, 1)
    ax = axes[0][0]
    values = np.asarray(max_devi_f, dtype=float)
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 100:  # wide range: log bins
        edges = np.geomspace(positive.min(), positive.max(), bins + 1)
        ax.set_xscale("log")
        values = np.clip(values, positive.min(), None)
    else:
        edges = bins
    ax.hist(values, bins=edges, color="tab:blue", alpha=0.8)
    ax.set_yscale("log")
    if window is not None:
        lo, hi = window
        shown = hi if np.isfinite(hi) else max(float(values.max()), lo) * 1.1  # an open window
        ax.axvspan(lo, shown, color="tab:orange", alpha=0.25, lw=0,
                   label=f"candidates [{lo:g}, {hi:g}) eV/Å")
        ax.legend(fontsize=9)
    ax.set_xlabel("max_devi_f (eV/Å)")
    ax.set_ylabel("frames")
    ax.set_title(title or f"{len(max_devi_f)} frames", fontsize=10)
    return _save(fig, path)


def select_window(deviations: Sequence[Deviation], lo: float, hi: float) -> np.ndarray:
    """Indices of the frames with lo <= max_devi_f < hi."""
    if not lo < hi:
        raise ValueError(f"--select LO HI needs LO < HI, got {lo} {hi}")
    values = np.array([d.max_devi_f for d in deviations])
    return np.flatnonzero((values >= lo) & (values < hi))


def write_candidates(frames: Sequence, steps: Sequence[int], deviations: Sequence[Deviation],
                     indices: Sequence[int], path) -> Path:
    """The chosen frames as bare structures (no energies or forces that could pass for labels)."""
    import ase.io
    from ase import Atoms

    chosen = []
    for k in indices:
        src = frames[k]
        atoms = Atoms(symbols=src.get_chemical_symbols(), positions=src.get_positions(), cell=src.cell,
                      pbc=src.pbc)
        atoms.info.update({"step": int(steps[k]), "source_frame": int(k),
                           "max_devi_f": float(deviations[k].max_devi_f)})
        atoms.arrays["force_deviation"] = np.asarray(deviations[k].atom_devi_f, dtype=float)
        chosen.append(atoms)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, chosen, format="extxyz")
    return path


# -------------------------------------------------------------------------------------------
# the command
# -------------------------------------------------------------------------------------------
def evaluate_ensemble(models: Sequence[str], data, output_dir, *, type_map: Optional[str] = None,
                      select=None, relative: Optional[float] = None, atomic: bool = False,
                      device: str = "cpu", dtype: str = "float64", batch_size: int = 16,
                      progress: bool = False, log=print) -> dict:
    """Deviations of `models` (the first drives) on the frames of `data`; writes model_devi.out,
    deviation.png, deviation.json and, with `select=(LO, HI)`, candidates.extxyz."""
    from .predictor import Predictor
    from .report import write_json

    if len(models) < 2:
        raise ValueError("--ensemble needs at least one more model besides MODEL")
    if select is not None and not select[0] < select[1]:
        raise ValueError(f"--select LO HI needs LO < HI, got {select[0]} {select[1]}")
    frames = read_frames(data, parse_type_map(type_map))
    steps = frame_steps(frames)
    predictors = [Predictor(m, device=device, dtype=dtype) for m in models]
    names = [str(m) for m in models]
    check_compatible([p.calculator for p in predictors], names)
    first = predictors[0]
    log(f"hienet-eval --ensemble: {len(models)} models ({', '.join(names)}; the first drives), "
        f"{len(first.species)} species, cutoff {first.cutoff} Å, dtype {first.dtype_name}, device {first.device}")
    log(f"data: {data}: {len(frames)} frames, {sum(len(a) for a in frames)} atoms")

    with progress_bar(len(frames), "deviation", progress) as bar:
        deviations = ensemble_deviations(predictors, names, frames, batch_size=batch_size, relative=relative,
                                         progress=bar.update, source=f"{data} frame")
    out = Path(output_dir)
    max_f = np.array([d.max_devi_f for d in deviations])
    files = [write_model_devi(out / DEVIATION_FILE, steps, deviations, atomic=atomic),
             deviation_histogram(max_f, out / "deviation.png", window=select,
                                 title=f"{Path(data).name}: {len(frames)} frames, {len(models)} models")]
    summary = {"models": names, "data": str(data), "num_frames": len(frames), "relative": relative,
               "max_devi_f": {"min": float(max_f.min()), "median": float(np.median(max_f)),
                              "max": float(max_f.max())}}
    if select is not None:
        lo, hi = select
        chosen = select_window(deviations, lo, hi)
        summary["select"] = {"lo": lo, "hi": hi, "accurate": int((max_f < lo).sum()),
                             "candidate": int(len(chosen)), "failed": int((max_f >= hi).sum())}
        files.append(write_candidates(frames, steps, deviations, chosen, out / "candidates.extxyz"))
        log(f"max_devi_f < {lo:g}: {summary['select']['accurate']} accurate, [{lo:g}, {hi:g}): "
            f"{len(chosen)} candidates, >= {hi:g}: {summary['select']['failed']} failed")
    files.append(write_json(summary, out / "deviation.json"))
    log(f"max_devi_f over frames: min {max_f.min():.4g}, median {np.median(max_f):.4g}, max {max_f.max():.4g} eV/Å")
    log("wrote " + ", ".join(str(f) for f in files))
    return summary
