"""`hienet-eval`: test-set errors against an independent computation, output files, errors,
diatomic curves (smooth vs official invariant layer) and the training curve.

The reference errors are computed here structure by structure with `HIENetCalculator`
(one structure per call, no batching, no code of hienet.evaluation), grouped with plain numpy.
"""
import csv
import json
import math

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase import units as ase_units
from ase.calculators.singlepoint import SinglePointCalculator
from PIL import Image

from hienet.calculator import HIENetCalculator
from hienet.evaluation import Predictor
from hienet.evaluation.cli import main
from hienet.pretrained import bundled_model_path

from conftest import reference_file

PANEL = 480  # pixels: hienet.evaluation.plots draws 4-inch panels at 120 dpi
TO_GPA = 1.0 / ase_units.GPa


def png(path, width, height):
    """The PNG exists, has the expected pixel size and is not a blank image."""
    assert path.is_file() and path.stat().st_size > 10_000, path
    image = Image.open(path)
    assert image.format == "PNG"
    assert image.size == (width, height), f"{path.name}: {image.size} != {(width, height)}"
    assert np.asarray(image.convert("L")).std() > 5.0, f"{path.name} looks blank"


def reference_errors(frames, calc):
    """Per-structure errors from the calculator: {type: [(dE/atom, dF (3N,), dσ (6,) or None)]}."""
    rows = []
    for atoms in frames:
        ref_e, ref_f, ref_s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms = atoms.copy()
        atoms.calc = calc
        rows.append({
            "type": atoms.info["config_type"], "symbols": np.repeat(atoms.get_chemical_symbols(), 3),
            "energy": (atoms.get_potential_energy() - ref_e) / len(atoms) * 1e3,
            "forces": (atoms.get_forces() - ref_f).ravel() * 1e3,
            "stress": (atoms.get_stress() - ref_s) * TO_GPA,
            "pred_energy": atoms.get_potential_energy(), "pred_forces": atoms.get_forces(),
        })
    return rows


def mae_rmse(errors):
    errors = np.concatenate([np.ravel(e) for e in errors])
    return np.abs(errors).mean(), np.sqrt((errors**2).mean()), errors.size


@pytest.fixture(scope="module")
def held_out(held_out_path):
    return ase.io.read(held_out_path, ":")


@pytest.fixture(scope="module")
def reference(held_out):
    return reference_errors(held_out, HIENetCalculator("si-demo"))


@pytest.fixture(scope="module")
def cli_run(held_out_path, tmp_path_factory):
    """`hienet-eval si-demo DATA -o OUT` with its printed output."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("eval") / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["si-demo", str(held_out_path), "-o", str(out), "--no-progress", "--batch-size", "7"])
    assert code == 0
    return out, buffer.getvalue()


def printed_row(text, label, quantity):
    """(MAE, RMSE, count) of the printed table row `label quantity`."""
    for line in text.splitlines():
        if line.startswith(label) and f" {quantity} " in line:
            fields = line.split()
            return float(fields[-4]), float(fields[-3]), int(fields[-1])
    raise AssertionError(f"no printed row {label!r} {quantity!r} in:\n{text}")


def test_printed_and_written_errors_equal_the_calculator(cli_run, reference):
    out, text = cli_run
    summary = json.loads((out / "summary.json").read_text())
    groups = {"all": reference}
    for kind in sorted({r["type"] for r in reference}):
        groups[f"type {kind}"] = [r for r in reference if r["type"] == kind]
    assert len(groups) > 5  # the held-out set has many structure types
    for label, rows in groups.items():
        written = summary["overall"] if label == "all" else summary["per_type"][label[5:]]
        for quantity, key in (("energy_per_atom", "energy"), ("forces", "forces"), ("stress", "stress")):
            mae, rmse, count = mae_rmse([r[key] for r in rows])
            got = written[quantity]
            assert got["count"] == count, (label, quantity)
            assert got["mae"] == pytest.approx(mae, rel=1e-9, abs=1e-12), (label, quantity)
            assert got["rmse"] == pytest.approx(rmse, rel=1e-9, abs=1e-12), (label, quantity)
            p_mae, p_rmse, p_count = printed_row(text, label[:21], quantity)
            assert p_count == count
            assert p_mae == pytest.approx(mae, rel=1e-5) and p_rmse == pytest.approx(rmse, rel=1e-5)
    mae, rmse, count = mae_rmse([r["forces"] for r in reference])
    assert summary["per_element"]["Si"]["forces"]["mae"] == pytest.approx(mae, rel=1e-9)
    assert printed_row(text, "element Si", "forces")[0] == pytest.approx(mae, rel=1e-5)
    # the errors are real, not zeros: the demo model is a few meV/atom and ~60 meV/Å off SNAP
    assert 1.0 < summary["overall"]["energy_per_atom"]["mae"] < 20.0
    assert 20.0 < summary["overall"]["forces"]["mae"] < 150.0


def test_output_files(cli_run, held_out, reference):
    out, text = cli_run
    assert "hienet-eval" in text and "dtype float64" in text and "(eager)" in text
    png(out / "parity.png", 3 * PANEL, PANEL)
    png(out / "errors.png", 3 * PANEL, PANEL)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["group"], r["quantity"]) for r in rows} >= {("overall", "forces"), ("element", "forces"),
                                                          ("type", "stress")}
    with open(out / "structures.csv", newline="") as f:
        per_structure = list(csv.DictReader(f))
    assert len(per_structure) == len(held_out)
    predicted = ase.io.read(out / "predictions.extxyz", ":")
    assert len(predicted) == len(held_out)
    for atoms, original, ref in zip(predicted, held_out, reference):
        # the labels stay as they were, the predictions sit next to them
        assert atoms.get_potential_energy() == pytest.approx(original.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), original.get_forces(), rtol=0, atol=1e-12)
        assert atoms.info["config_type"] == original.info["config_type"]
        # extxyz stores 8 decimals
        assert atoms.info["hienet_energy"] == pytest.approx(ref["pred_energy"], abs=1e-8)
        np.testing.assert_allclose(atoms.arrays["hienet_forces"], ref["pred_forces"], rtol=0, atol=1e-8)
        assert atoms.arrays["hienet_energies"].sum() == pytest.approx(ref["pred_energy"], abs=1e-8 * len(atoms))
        assert atoms.info["hienet_stress"].shape == (6,)


@pytest.mark.parametrize("kind", ["checkpoint", "exported", "float32"])
def test_batched_predictions_equal_one_structure_at_a_time(kind, held_out):
    frames = held_out[:5]
    if kind == "exported":
        model, dtype, tol = bundled_model_path("si-demo", exported=True), "float64", 1e-10
    else:
        model, dtype = "si-demo", "float64" if kind == "checkpoint" else "float32"
        tol = 1e-10 if kind == "checkpoint" else 1e-4
    predictor = Predictor(model, dtype=dtype)
    assert predictor.kind == ("exported" if kind == "exported" else "eager")
    calc = HIENetCalculator(model, dtype=dtype)
    batched = predictor.predict(frames, batch_size=3)
    for atoms, p in zip(frames, batched):
        atoms = atoms.copy()
        atoms.calc = calc
        scale = max(1.0, abs(atoms.get_potential_energy()))
        assert p.energy == pytest.approx(atoms.get_potential_energy(), abs=tol * scale)
        np.testing.assert_allclose(p.forces, atoms.get_forces(), rtol=0, atol=tol * 10)
        np.testing.assert_allclose(p.stress, atoms.get_stress(), rtol=0, atol=tol)


def test_exported_file_through_the_cli(held_out_path, tmp_path, capsys):
    exported = bundled_model_path("si-demo", exported=True)
    assert main([exported, str(held_out_path), "-o", str(tmp_path), "--no-progress", "--type-key", ""]) == 0
    text = capsys.readouterr().out
    assert "(exported)" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model_kind"] == "exported" and summary["per_type"] == {}


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def eval_error(capsys, *argv):
    assert main(list(map(str, argv)) + ["--no-progress"]) == 2
    return capsys.readouterr().err


def labelled(atoms, **labels):
    atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


def test_missing_files_are_named(tmp_path, capsys, held_out_path):
    err = eval_error(capsys, "si-demo", tmp_path / "nope.extxyz", "-o", tmp_path)
    assert f"hienet-eval: error: data file not found: {tmp_path / 'nope.extxyz'}" in err
    err = eval_error(capsys, tmp_path / "missing.pth", held_out_path, "-o", tmp_path)
    assert f"model file not found: {tmp_path / 'missing.pth'}" in err
    assert "--training-curve takes no MODEL" in eval_error(capsys, "si-demo", "--training-curve", "m.csv")
    assert "metrics file not found" in eval_error(capsys, "--training-curve", tmp_path / "m.csv")


def test_labels_the_file_lacks_are_named(tmp_path, capsys):
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.43, cubic=True)
    no_forces = tmp_path / "no_forces.extxyz"
    ase.io.write(no_forces, [labelled(si.copy(), energy=-40.0, forces=np.zeros((8, 3))),
                             labelled(si.copy(), energy=-40.0)], format="extxyz")
    err = eval_error(capsys, "si-demo", no_forces, "-o", tmp_path)
    assert f"{no_forces} structure 1 has no forces" in err
    no_energy = tmp_path / "no_energy.extxyz"
    ase.io.write(no_energy, [labelled(si.copy(), forces=np.zeros((8, 3)))], format="extxyz")
    err = eval_error(capsys, "si-demo", no_energy, "-o", tmp_path)
    assert f"{no_energy} structure 0 has no" in err and "energy" in err
    err = eval_error(capsys, "si-demo", no_energy, "-o", tmp_path, "--energy-key", "DFT_energy")
    assert "info['DFT_energy']" in err
    carbon = tmp_path / "carbon.extxyz"
    ase.io.write(carbon, [labelled(bulk("C", "diamond", a=3.57), energy=-18.0, forces=np.zeros((2, 3)))],
                 format="extxyz")
    err = eval_error(capsys, "si-demo", carbon, "-o", tmp_path)
    assert "element(s) C not in the model" in err and f"{carbon} structure 0" in err


def test_smooth_invariant_needs_a_checkpoint(tmp_path, capsys, held_out_path):
    exported = bundled_model_path("si-demo", exported=True)
    err = eval_error(capsys, exported, "--diatomics", "--smooth-invariant", "on", "-o", tmp_path)
    assert "is an exported file, whose network is fixed" in err
    err = eval_error(capsys, "si-demo", held_out_path, "--smooth-invariant", "both", "-o", tmp_path)
    assert "--smooth-invariant both is for --diatomics" in err
    err = eval_error(capsys, "si-demo", "--diatomics", "--pairs", "Si-C", "-o", tmp_path)
    assert "pair 'Si-C': element(s) C not in the model" in err


# ---------------------------------------------------------------------------------------------
# diatomics
# ---------------------------------------------------------------------------------------------
def dimer_energy(calc, a, b, r):
    """E_AB(r) − E_A − E_B straight from the calculator (bond along z, not the eval's direction)."""
    def energy(atoms):
        atoms.calc = calc
        return atoms.get_potential_energy()

    pair = Atoms([a, b], positions=[[0, 0, 0], [0, 0, r]])
    return energy(pair) - energy(Atoms([a])) - energy(Atoms([b]))


@pytest.fixture(scope="module")
def official_diatomics(tmp_path_factory):
    """The official-layout small model (8 species) with smooth_invariant off and on, two pairs."""
    out = tmp_path_factory.mktemp("diatomics")
    path = reference_file("small/checkpoint_like.pth")
    assert main([str(path), "--diatomics", "--smooth-invariant", "both", "--pairs", "Fe-O,C-C", "--step", "0.1",
                 "-o", str(out), "--no-progress"]) == 0
    return path, out, json.loads((out / "diatomics.json").read_text())


def test_smooth_variant_has_no_energy_step_at_the_cutoff(official_diatomics):
    _, out, record = official_diatomics
    smooth = record["metrics"]["smooth_invariant on"]
    official = record["metrics"]["smooth_invariant off"]
    assert set(smooth) == set(official) == {"Fe-O", "C-C"}
    for pair in smooth:
        assert abs(smooth[pair]["energy_jump_at_cutoff"]) <= 1e-10, pair
        assert abs(smooth[pair]["force_at_cutoff"]) <= 1e-8, pair
        assert abs(official[pair]["energy_jump_at_cutoff"]) > 1e-4, pair   # the official layer jumps
    png(out / "diatomics.png", 2 * PANEL, PANEL)
    with open(out / "diatomics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


@pytest.fixture(scope="module")
def small_calculators():
    """Calculators of the official small model and of its smooth variant (same weights)."""
    from hienet.checkpoint import load_model
    from hienet.model import HIENet

    official = load_model(reference_file("small/checkpoint_like.pth"))
    assert official.config["smooth_invariant"] is False
    smooth = HIENet({**official.config, "smooth_invariant": True}).double()
    smooth.load_state_dict(official.state_dict())
    return {"off": HIENetCalculator(official), "on": HIENetCalculator(smooth.eval())}


def test_official_energy_step_equals_the_calculator(official_diatomics, small_calculators):
    """The recorded step, recomputed with the calculator on dimers either side of the cutoff."""
    _, _, record = official_diatomics
    calc = small_calculators["off"]
    rc, delta = record["cutoff"], 1e-6
    for pair, metrics in record["metrics"]["smooth_invariant off"].items():
        a, b = pair.split("-")
        above = dimer_energy(calc, a, b, rc + delta)
        assert above == 0.0  # no edge: exactly the two isolated atoms
        step = dimer_energy(calc, a, b, rc - delta) - above
        assert metrics["energy_jump_at_cutoff"] == pytest.approx(step, rel=1e-9, abs=1e-12)
        print(f"official small model, {pair}: energy step at the cutoff {step:.6e} eV")


def test_pair_curve_forces_are_minus_the_energy_slope(official_diatomics, small_calculators):
    """F(r) > 0 means repulsion: F = −dE/dr, checked by central differences on the written curve."""
    _, _, record = official_diatomics
    curve = record["curves"]["smooth_invariant on"]["Fe-O"]
    r, e, f = (np.array(curve[k]) for k in ("r", "energy", "force"))
    inner = slice(1, -1)
    slope = (e[2:] - e[:-2]) / (r[2:] - r[:-2])
    middle = (r[inner] > 1.5) & (r[inner] < 4.5)
    # second-order differences with h = 0.1 Å: agreement to a few % of the force scale
    assert np.abs(f[inner][middle] + slope[middle]).max() < 0.05 * np.abs(f[inner][middle]).max() + 1e-4
    # and a point of the curve straight from the calculator (another bond direction)
    k = len(r) // 3
    assert e[k] == pytest.approx(dimer_energy(small_calculators["on"], "Fe", "O", r[k]), abs=1e-9)


def test_si_demo_diatomic_is_smooth(tmp_path, capsys):
    assert main(["si-demo", "--diatomics", "--step", "0.05", "-o", str(tmp_path), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "diatomics.json").read_text())["metrics"]["as loaded"]["Si-Si"]
    assert abs(metrics["energy_jump_at_cutoff"]) <= 1e-10
    assert metrics["e_short_range"] > 0  # the wall at 0.5 Å is above the isolated atoms
    assert "Si-Si" in capsys.readouterr().out
    png(tmp_path / "diatomics.png", PANEL, PANEL)


# ---------------------------------------------------------------------------------------------
# training curve
# ---------------------------------------------------------------------------------------------
def test_training_curve_from_metrics_csv(tmp_path, capsys):
    from hienet.train.trainer import CSV_COLUMNS

    path = tmp_path / "metrics.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for epoch in range(6):
            row = {"epoch": epoch, "val_loss": 1.0 / (epoch + 1), "val_E_mae_meV_per_atom": 30 * math.exp(-epoch),
                   "val_F_mae_meV_per_A": 200 / (epoch + 1), "val_S_mae_GPa": 0.5 / (epoch + 1)}
            if epoch:
                row.update(train_loss=1.2 / epoch, train_E_mae_meV_per_atom=40 * math.exp(-epoch),
                           train_F_mae_meV_per_A=250 / epoch, train_S_mae_GPa=0.6 / epoch)
            writer.writerow(row)
    assert main(["--training-curve", str(path)]) == 0
    png(tmp_path / "training_curve.png", 4 * PANEL, PANEL)
    assert main(["--training-curve", str(path), "-o", str(tmp_path / "curve.png")]) == 0
    png(tmp_path / "curve.png", 4 * PANEL, PANEL)


def test_trainer_writes_the_training_curve(tmp_path):
    from test_train import base_config, lj_frames, quiet

    from hienet.train import Trainer

    data = tmp_path / "lj.extxyz"
    ase.io.write(data, lj_frames(6, seed=3), format="extxyz")
    Trainer(base_config(data, tmp_path / "run", epochs=2), log=quiet).fit()
    png(tmp_path / "run" / "training_curve.png", 4 * PANEL, PANEL)


def test_readme_shows_the_eval_command_a_plot_and_the_unit_styles():
    import re

    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    assert "hienet-eval si-demo si_test.extxyz" in readme and "--diatomics" in readme
    images = re.findall(r"!\[[^\]]*\]\((examples/eval/[^)]+\.png)\)", readme)
    assert images, "no hienet-eval plot in the README"
    for image in images:
        assert (REPO / image).is_file(), image
    for style in ("real", "si", "cgs", "electron", "micro", "nano"):
        assert style in readme.split("## Run LAMMPS")[1].split("##")[0], style
