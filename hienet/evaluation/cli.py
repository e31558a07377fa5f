"""`hienet-eval`: test-set errors, diatomic curves and training curves of HIENet models.

Examples::

    hienet-eval si-demo test.extxyz -o eval/           # MAE/RMSE, parity + error plots, predictions
    hienet-eval model.pt test.extxyz --dtype float32   # an exported file (its own dtype)
    hienet-eval HIENet-V3.pth --diatomics --pairs Si-Si,Si-O
    hienet-eval ckpt.pth --diatomics --smooth-invariant both   # official vs smooth invariant layer
    hienet-eval --training-curve runs/si-demo/metrics.csv
    hienet-eval m1.pt traj.dump --ensemble m2.pt m3.pt --type-map Si,O --select 0.05 0.3

MODEL is our checkpoint (.pth), an official HIENet checkpoint, a file written by
hienet-export, or a bundled model name (si-demo). Files written to -o DIR (default
hienet-eval-output): summary.json, summary.csv, structures.csv, predictions.extxyz,
parity.png, errors.png; with --diatomics: diatomics.png, diatomics.json, diatomics.csv;
with --ensemble (model deviation of unlabelled frames, extxyz or LAMMPS dump, see
hienet/evaluation/deviation.py): model_devi.out, deviation.png, deviation.json and, with
--select, candidates.extxyz.
Units: energy meV/atom, forces meV/Å (per component), stress GPa (per Voigt component).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict, Optional

from .diatomics import R_MIN, STEP
from .frames import progress_bar, read_frames

DEFAULT_OUTPUT = "hienet-eval-output"
DEFAULT_TYPE_KEY = "config_type"


def _model(model, smooth: Optional[str]):
    """The model argument for `Predictor`: as given, or a smooth_invariant variant."""
    if smooth in (None, "keep"):
        return model
    from .predictor import with_smooth_invariant

    return with_smooth_invariant(model, smooth == "on")


def _provenance(predictor, model: str, log) -> None:
    from .. import __version__

    log(f"hienet-eval {__version__}: model {model} ({predictor.kind}), {len(predictor.species)} species, "
        f"cutoff {predictor.cutoff} Å, dtype {predictor.dtype_name}, device {predictor.device}")


def evaluate_test_set(model: str, data, output_dir, *, device: str = "cpu", dtype: str = "float64",
                      batch_size: int = 16, type_key: Optional[str] = DEFAULT_TYPE_KEY, energy_key=None,
                      forces_key=None, stress_key=None, smooth_invariant: Optional[str] = None,
                      progress: bool = False, log=print) -> Dict:
    """Errors of `model` on the labelled structures in `data`; writes every output file to
    `output_dir` and returns the summary (also in summary.json)."""
    from .metrics import compare, reference_labels, structure_types, summarize
    from .plots import error_histogram, parity_plot
    from .predictor import Predictor
    from .report import format_summary, structure_rows, summary_rows, write_csv, write_json, write_predictions

    frames = read_frames(data)
    labels = reference_labels(frames, str(data), energy_key, forces_key, stress_key)
    predictor = Predictor(_model(model, smooth_invariant), device=device, dtype=dtype)
    _provenance(predictor, model, log)
    num_atoms = sum(len(a) for a in frames)
    log(f"data: {data}: {len(frames)} structures, {num_atoms} atoms, "
        f"{sum(lab.stress is not None for lab in labels)} with stress")
    t0 = time.perf_counter()
    with progress_bar(len(frames), "evaluating", progress) as bar:
        predictions = predictor.predict(frames, batch_size=batch_size, progress=bar.update, source=f"{data} structure")
    seconds = time.perf_counter() - t0
    types = structure_types(frames, type_key)
    comparison = compare(frames, labels, predictions, types)
    summary = {
        "model": str(model), "model_kind": predictor.kind, "data": str(data), "num_structures": len(frames),
        "num_atoms": num_atoms, "dtype": predictor.dtype_name, "device": str(predictor.device),
        "smooth_invariant": smooth_invariant or "keep", "type_key": type_key, "seconds": seconds,
        **summarize(comparison),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{model} on {Path(data).name}"
    files = [
        write_json(summary, out / "summary.json"),
        write_csv(summary_rows(summary), out / "summary.csv"),
        write_csv(structure_rows(frames, labels, predictions, types), out / "structures.csv"),
        write_predictions(frames, predictions, out / "predictions.extxyz"),
        parity_plot(comparison, out / "parity.png", title),
        error_histogram(comparison, out / "errors.png", title),
    ]
    log(format_summary(summary))
    log(f"{len(frames)} structures in {seconds:.2f} s; wrote " + ", ".join(str(f) for f in files))
    return summary


def evaluate_diatomics(model: str, output_dir, *, pairs: Optional[str] = None, r_min: float = R_MIN,
                       r_max: Optional[float] = None, step: float = STEP, device: str = "cpu",
                       dtype: str = "float64", batch_size: int = 512, smooth_invariant: Optional[str] = None,
                       progress: bool = False, log=print) -> Dict:
    """Pair curves and their metrics for one model (or both smooth_invariant variants);
    writes diatomics.png/.json/.csv to `output_dir` and returns {variant: {pair: metrics}}."""
    from .diatomics import default_pairs, pair_curves, pair_metrics, parse_pairs, sample_distances
    from .plots import diatomic_grid
    from .predictor import Predictor
    from .report import write_csv, write_json

    settings = ["off", "on"] if smooth_invariant == "both" else [smooth_invariant]
    base = _model(model, "off") if smooth_invariant == "both" else model  # load the checkpoint once
    variants = {}
    for setting in settings:
        name = "as loaded" if setting in (None, "keep") else f"smooth_invariant {setting}"
        variants[name] = Predictor(_model(base, setting), device=device, dtype=dtype)
    first = next(iter(variants.values()))
    _provenance(first, model, log)
    chosen = parse_pairs(pairs, first.species) if pairs else default_pairs(first.species)
    distances = sample_distances(first.cutoff, r_min, r_max, step)
    log(f"diatomics: {len(chosen)} pairs, r = {distances[0]:.3g} .. {distances[-1]:.3g} Å in {len(distances)} "
        f"steps, variants: {', '.join(variants)}")
    curves, metrics = {}, {}
    for name, predictor in variants.items():
        total = len(chosen) * (len(distances) + 4)
        with progress_bar(total, f"pairs ({name})", progress) as bar:
            curves[name] = pair_curves(predictor, chosen, distances, batch_size=batch_size, progress=bar.update)
        metrics[name] = {pair: pair_metrics(c, predictor.cutoff) for pair, c in curves[name].items()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"variant": name, "pair": pair, **m} for name, by_pair in metrics.items() for pair, m in by_pair.items()]
    record = {
        "model": str(model), "cutoff": first.cutoff, "dtype": first.dtype_name, "metrics": metrics,
        "curves": {name: {pair: {"r": c.r, "energy": c.energy, "force": c.force} for pair, c in by_pair.items()}
                   for name, by_pair in curves.items()},
    }
    files = [
        write_json(record, out / "diatomics.json"),
        write_csv(rows, out / "diatomics.csv"),
        diatomic_grid({name: {pair: {"r": c.r, "energy": c.energy, "force": c.force} for pair, c in by_pair.items()}
                       for name, by_pair in curves.items()}, out / "diatomics.png", first.cutoff,
                      title=f"{model}: E(r) − E(∞) and F(r)"),
    ]
    log(_format_diatomics(rows))
    log("wrote " + ", ".join(str(f) for f in files))
    return metrics


def _format_diatomics(rows) -> str:
    head = (f"{'variant':<21}{'pair':<8}{'E jump at rc (eV)':>19}{'F flips':>9}{'r_min (Å)':>11}"
            f"{'E_min (eV)':>12}{'E(r0) (eV)':>12}{'spearman':>10}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['variant'][:20]:<21}{r['pair']:<8}{r['energy_jump_at_cutoff']:>19.3e}"
                     f"{r['force_sign_flips']:>9d}{r['r_min']:>11.3f}{r['e_min']:>12.4g}{r['e_short_range']:>12.4g}"
                     f"{r['spearman_repulsion']:>10.3f}")
    return "\n".join(lines)


def training_curve_png(metrics_csv, output=None, log=print) -> Path:
    """training_curve.png next to `metrics_csv`, in directory `output`, or at `output` (.png)."""
    from .plots import training_curve

    metrics_csv = Path(metrics_csv)
    if output is None:
        target = metrics_csv.with_name("training_curve.png")
    elif str(output).endswith(".png"):
        target = Path(output)
    else:
        target = Path(output) / "training_curve.png"
    path = training_curve(metrics_csv, target)
    log(f"wrote {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="hienet-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("model", nargs="?", help="checkpoint, official checkpoint, exported file or bundled name")
    parser.add_argument("data", nargs="?", help="labelled structures (extxyz or any ase.io format)")
    parser.add_argument("-o", "--output", help=f"output directory (default {DEFAULT_OUTPUT}; for --training-curve: "
                        "next to metrics.csv, or a directory, or a .png path)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="precision of checkpoints (default float64); exported files keep their own")
    parser.add_argument("--batch-size", type=int, help="structures per forward pass (default 16; diatomics 512)")
    parser.add_argument("--type-key", default=DEFAULT_TYPE_KEY,
                        help=f"atoms.info key with the structure type (default {DEFAULT_TYPE_KEY}); '' for none")
    parser.add_argument("--energy-key", help="atoms.info key of the reference energy (default: extxyz energy=)")
    parser.add_argument("--forces-key", help="atoms.arrays key of the reference forces (default: extxyz forces)")
    parser.add_argument("--stress-key", help="atoms.info key of the reference stress (default: extxyz stress)")
    parser.add_argument("--smooth-invariant", choices=["keep", "on", "off", "both"], default="keep",
                        help="evaluate a checkpoint with its invariant layer made smooth (on) or official (off); "
                             "both: draw the two variants (with --diatomics)")
    parser.add_argument("--diatomics", action="store_true", help="pair curves E(r), F(r) instead of a test set")
    parser.add_argument("--pairs", help="pairs for --diatomics, e.g. Si-Si,Si-O (default: every homonuclear pair "
                        "and every heteronuclear one for up to 8 species, else a common set)")
    parser.add_argument("--r-min", type=float, default=R_MIN, help=f"--diatomics: shortest distance (Å, default {R_MIN})")
    parser.add_argument("--r-max", type=float, help="--diatomics: longest distance (Å, default cutoff + 1)")
    parser.add_argument("--step", type=float, default=STEP, help=f"--diatomics: distance step (Å, default {STEP})")
    parser.add_argument("--training-curve", metavar="METRICS_CSV", help="plot a hienet-train metrics.csv and exit")
    parser.add_argument("--ensemble", nargs="+", metavar="M", help="more models: model deviation of MODEL and "
                        "these on the frames of DATA (extxyz or LAMMPS dump), written as model_devi.out")
    parser.add_argument("--type-map", help="--ensemble on a LAMMPS dump without an element column: the "
                        "element of each atom type in order, e.g. Si,O")
    parser.add_argument("--select", nargs=2, type=float, metavar=("LO", "HI"), help="--ensemble: write the "
                        "frames with LO <= max_devi_f < HI (eV/Å) to candidates.extxyz")
    parser.add_argument("--relative", type=float, metavar="EPS", help="--ensemble: force deviation relative to "
                        "|<F_i>| + EPS (eV/Å)")
    parser.add_argument("--atomic", action="store_true", help="--ensemble: per-atom force deviations in "
                        "model_devi.out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def fail(message) -> int:
        print(f"hienet-eval: error: {message}", file=sys.stderr)
        return 2

    try:
        if args.training_curve:
            if args.model or args.data:
                return fail("--training-curve takes no MODEL or DATA")
            training_curve_png(args.training_curve, args.output)
            return 0
        if not args.model:
            parser.error("MODEL is required (or --training-curve METRICS_CSV)")
        output = args.output or DEFAULT_OUTPUT
        if args.ensemble:
            from .deviation import evaluate_ensemble

            if not args.data:
                parser.error("--ensemble needs DATA (an extxyz or a LAMMPS dump)")
            evaluate_ensemble([args.model, *args.ensemble], args.data, output, type_map=args.type_map,
                              select=args.select, relative=args.relative, atomic=args.atomic,
                              device=args.device, dtype=args.dtype, batch_size=args.batch_size or 16,
                              progress=not args.no_progress)
            return 0
        if args.type_map or args.select or args.relative is not None or args.atomic:
            return fail("--type-map, --select, --relative and --atomic go with --ensemble")
        common = dict(device=args.device, dtype=args.dtype, smooth_invariant=args.smooth_invariant,
                      progress=not args.no_progress)
        if args.diatomics:
            if args.data:
                return fail(f"--diatomics takes no DATA file (got {args.data})")
            evaluate_diatomics(args.model, output, pairs=args.pairs, r_min=args.r_min, r_max=args.r_max,
                               step=args.step, batch_size=args.batch_size or 512, **common)
            return 0
        if not args.data:
            parser.error("DATA is required (a labelled extxyz file), or use --diatomics")
        if args.smooth_invariant == "both":
            return fail("--smooth-invariant both is for --diatomics; evaluate a test set with on or off")
        evaluate_test_set(args.model, args.data, output, batch_size=args.batch_size or 16,
                          type_key=args.type_key or None, energy_key=args.energy_key, forces_key=args.forces_key,
                          stress_key=args.stress_key, **common)
        return 0
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, NotImplementedError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        return fail(message)


if __name__ == "__main__":
    sys.exit(main())
