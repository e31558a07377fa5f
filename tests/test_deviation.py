"""Ensemble model deviation: `pair_style hienet m1 m2 ... deviation`, the ensemble
HIENetCalculator and `hienet-eval --ensemble`.

References are independent of the code under test: the deviations of each LAMMPS frame are
recomputed from separate single-model ASE calculators (one per model file, np.std over the
models, the stress turned back into a virial) on the positions LAMMPS dumped (%.17g); MD with
the deviation is compared bit for bit with MD without it. The ensemble is the bundled si-demo
model and two copies with perturbed weights (2 % and 3 % multiplicative noise), exported by
`hienet.export`; mismatches use the toy model of tests/toy_model.py.
"""
import numpy as np
import pytest
import torch

from lammps_helpers import LammpsError, run_lammps
from toy_model import write_toy_model

from hienet import HIENetCalculator
from hienet.checkpoint import load_model, save_checkpoint
from hienet.ensemble import COLUMNS
from hienet.export.exporter import export_model
from hienet.pretrained import bundled_model_path

RTOL = 1e-10    # LAMMPS (11 significant digits in the file) vs ASE
ATOL = 1e-13    # for deviations that are round-off-sized (min_devi_v of a near-cubic cell)
EVERY = 10


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """si-demo.pt and two perturbed copies (checkpoint and exported file of each)."""
    workdir = tmp_path_factory.mktemp("ensemble")
    paths = {"first": bundled_model_path("si-demo", exported=True), "first_ckpt": bundled_model_path("si-demo")}
    for k, noise in ((1, 0.02), (2, 0.03)):
        model = load_model(paths["first_ckpt"], dtype=torch.float64)
        torch.manual_seed(k)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + noise * torch.randn_like(p))
        save_checkpoint(workdir / f"perturbed{k}.pth", model)
        export_model(model, workdir / f"perturbed{k}.pt")
        paths[f"p{k}_ckpt"] = str(workdir / f"perturbed{k}.pth")
        paths[f"p{k}"] = str(workdir / f"perturbed{k}.pt")
    return paths


def md_script(workdir, pair_style: str, tag: str, compute: bool, steps: int = 2 * EVERY, every: int = EVERY) -> str:
    """NVE of 64 rattled Si atoms at 1500 K; positions and velocities dumped every `every` steps."""
    dev = "compute dev all hienet/deviation" if compute else ""
    column = "c_dev" if compute else ""
    return f"""
units metal
atom_style atomic
atom_modify map array
lattice diamond 5.43
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 28.0855
displace_atoms all random 0.15 0.15 0.15 8123
pair_style {pair_style}
pair_coeff * * Si
{dev}
velocity all create 1500 4928459 mom yes rot yes dist gaussian loop geom
fix 1 all nve
timestep 0.001
thermo_style custom step pe ke press
thermo_modify format float %.17g
fix p all print 1 "$(step) $(pe:%.17g) $(ke:%.17g) $(press:%.17g)" file {workdir}/{tag}thermo.txt screen no
dump d all custom {every} {workdir}/{tag}traj.dump id type element x y z vx vy vz {column}
dump_modify d sort id format float %.17g element Si
run {steps}
"""


def read_dump(path):
    import ase.io

    return ase.io.read(path, index=":", format="lammps-dump-text")


def read_devi(path) -> np.ndarray:
    return np.atleast_2d(np.loadtxt(path, comments="#"))


def ase_deviation(calculators, atoms, relative=None):
    """(row of 7, sigma_i) from separate single-model calculators: np.std over the models."""
    energies, forces, virials = [], [], []
    for calc in calculators:
        a = atoms.copy()
        a.calc = calc
        energies.append(a.get_potential_energy())
        forces.append(a.get_forces())
        virials.append(-a.get_stress(voigt=False) * a.get_volume())
    n = len(atoms)
    forces = np.array(forces)
    mean = forces.mean(axis=0)
    sigma = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=2), axis=0))
    if relative is not None:
        sigma = sigma / (np.linalg.norm(mean, axis=1) + relative)
    sv = np.std(np.array(virials) / n, axis=0)
    row = [sv.max(), sv.min(), np.sqrt(np.mean(sv**2)), sigma.max(), sigma.min(), sigma.mean(),
           np.std(np.array(energies) / n)]
    return np.array(row), sigma


# -------------------------------------------------------------------------------------------
# LAMMPS against separate ASE calculators; MD unchanged by the deviation
# -------------------------------------------------------------------------------------------
CASES = {
    "serial": (1, ""),
    "exchange-2ranks": (2, "graph exchange"),
    "ghost-2ranks": (2, "graph ghost"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lammps_deviation_equals_ase(ensemble, tmp_path, case):
    nprocs, graph = CASES[case]
    relative = 0.5 if case == "exchange-2ranks" else None
    models = [ensemble["first"], ensemble["p1"], ensemble["p2"]]
    option = f" relative {relative}" if relative else ""
    devi_file = tmp_path / "model_devi.out"
    ensemble_style = (f"hienet {' '.join(models)} deviation every {EVERY} file {devi_file}{option} "
                      f"atomic yes {graph}")
    run_lammps(md_script(tmp_path, ensemble_style, "devi_", compute=True), tmp_path, nprocs=nprocs)

    table = read_devi(devi_file)
    header = devi_file.read_text().splitlines()[0].split()
    assert header == ["#", "step", *COLUMNS, "atm_devi_f(N)"]
    frames = read_dump(tmp_path / "devi_traj.dump")
    assert table.shape == (len(frames), 1 + len(COLUMNS) + 64)
    assert list(table[:, 0]) == [0, EVERY, 2 * EVERY]
    calculators = [HIENetCalculator(m) for m in models]
    for row, atoms in zip(table, frames):
        expected, sigma = ase_deviation(calculators, atoms, relative)
        np.testing.assert_allclose(row[1:8], expected, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(row[8:], sigma, rtol=RTOL, atol=ATOL)        # atom-ID order
        np.testing.assert_allclose(atoms.arrays["c_dev"], sigma, rtol=RTOL, atol=ATOL)  # the compute
        assert row[4] > 1e-3                                                    # a real spread

    if case == "ghost-2ranks":
        return
    # the same MD without the deviation: the trajectory and thermo are bit-identical
    run_lammps(md_script(tmp_path, f"hienet {models[0]} {graph}", "plain_", compute=False), tmp_path,
               nprocs=nprocs)
    with_devi = (tmp_path / "devi_thermo.txt").read_text()
    plain = (tmp_path / "plain_thermo.txt").read_text()
    assert with_devi == plain
    for a, b in zip(frames, read_dump(tmp_path / "plain_traj.dump")):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.get_velocities(), b.get_velocities())


def test_repeated_model_gives_exact_zeros(ensemble, tmp_path):
    """An ensemble of one model three times, on two ranks (the ghost forces of each copy go
    through the reverse communication): every deviation is exactly 0."""
    first = ensemble["first"]
    devi_file = tmp_path / "zeros.out"
    style = f"hienet {first} {first} {first} deviation every 5 file {devi_file} atomic yes"
    run_lammps(md_script(tmp_path, style, "", compute=True, steps=10, every=5), tmp_path, nprocs=2)
    table = read_devi(devi_file)
    assert table.shape == (3, 1 + 7 + 64)
    assert np.all(table[:, 1:] == 0.0)

    calc = HIENetCalculator(["si-demo", "si-demo"])
    atoms = read_dump(tmp_path / "traj.dump")[-1]
    atoms.calc = calc
    atoms.get_forces()
    assert np.all(calc.results["force_deviation"] == 0.0)
    assert calc.results["energy_deviation"] == 0.0
    assert np.all(calc.results["virial_deviation"] == 0.0)
    assert np.all(calc.results["model_deviation"] == 0.0)


# -------------------------------------------------------------------------------------------
# ASE ensemble calculator
# -------------------------------------------------------------------------------------------
def test_ase_ensemble_calculator(ensemble):
    """Any model kinds (bundled name, checkpoint, exported file): the first model's results
    unchanged, the deviation of the separate calculators'."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
    atoms.rattle(0.1, seed=3)
    models = ["si-demo", ensemble["p1_ckpt"], ensemble["p2"]]
    calc = HIENetCalculator(models)
    atoms.calc = calc
    forces = atoms.get_forces()
    single = atoms.copy()
    single.calc = HIENetCalculator("si-demo")
    assert np.array_equal(forces, single.get_forces())
    assert atoms.get_potential_energy() == single.get_potential_energy()
    assert np.array_equal(atoms.get_stress(), single.get_stress())
    assert np.array_equal(calc.results["energies"], single.calc.results["energies"])

    expected, sigma = ase_deviation([HIENetCalculator(m) for m in models], atoms)
    np.testing.assert_allclose(calc.results["force_deviation"], sigma, rtol=1e-12)
    np.testing.assert_allclose(calc.results["model_deviation"], expected, rtol=1e-12, atol=1e-15)
    assert calc.results["energy_deviation"] == pytest.approx(expected[6], rel=1e-12)
    assert np.array_equal(calc.get_property("force_deviation", atoms), calc.results["force_deviation"])
    assert np.allclose(calc.results["virial_deviation"], calc.results["virial_deviation"].T)


# -------------------------------------------------------------------------------------------
# hienet-eval --ensemble
# -------------------------------------------------------------------------------------------
def test_hienet_eval_ensemble_reproduces_lammps_file(ensemble, tmp_path):
    """On LAMMPS's own dump: the same model_devi.out (to the 11 digits written); --select
    writes the frames in the window; a dump without elements needs --type-map."""
    import ase.io

    from hienet.evaluation.cli import main

    models = [ensemble["first"], ensemble["p1"]]
    devi_file = tmp_path / "lammps_devi.out"
    style = f"hienet {' '.join(models)} deviation every 5 file {devi_file}"
    run_lammps(md_script(tmp_path, style, "", compute=False, steps=15, every=5), tmp_path)
    lammps = read_devi(devi_file)

    dump = tmp_path / "traj.dump"    # with an element column
    assert main([models[0], str(dump), "--ensemble", models[1], "-o", str(tmp_path / "e"), "--no-progress"]) == 0
    ours = read_devi(tmp_path / "e" / "model_devi.out")
    assert np.array_equal(ours[:, 0], lammps[:, 0])
    np.testing.assert_allclose(ours[:, 1:], lammps[:, 1:], rtol=1e-9, atol=1e-13)
    assert (tmp_path / "e" / "deviation.png").stat().st_size > 1000

    # types only: refused without --type-map, read with it
    lines, in_atoms = [], False
    for line in dump.read_text().splitlines():
        if line.startswith("ITEM:"):
            in_atoms = line.startswith("ITEM: ATOMS")
            lines.append(line.replace(" element", ""))
        else:
            words = line.split()
            lines.append(" ".join(words[:2] + words[3:]) if in_atoms else line)
    bare = tmp_path / "bare.dump"
    bare.write_text("\n".join(lines) + "\n")
    assert main([models[0], str(bare), "--ensemble", models[1], "-o", str(tmp_path / "f"), "--no-progress"]) == 2
    ranked = np.sort(lammps[:, 4])
    lo, hi = 0.5 * (ranked[0] + ranked[1]), np.inf
    assert main([models[0], str(bare), "--ensemble", models[1], "--type-map", "Si", "--select", str(lo), str(hi),
                 "-o", str(tmp_path / "g"), "--no-progress"]) == 0
    np.testing.assert_allclose(read_devi(tmp_path / "g" / "model_devi.out")[:, 1:], lammps[:, 1:], rtol=1e-9,
                               atol=1e-13)
    chosen = ase.io.read(tmp_path / "g" / "candidates.extxyz", index=":")
    expected_steps = lammps[lammps[:, 4] >= lo, 0]
    assert [a.info["step"] for a in chosen] == list(expected_steps)
    assert all(a.calc is None and set(a.arrays) == {"numbers", "positions", "force_deviation"} for a in chosen)


def test_hienet_eval_bad_type_map(ensemble, tmp_path, capsys):
    from hienet.evaluation.cli import main

    dump = tmp_path / "t.dump"
    dump.write_text("ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n1\nITEM: BOX BOUNDS pp pp pp\n0 5\n0 5\n0 5\n"
                    "ITEM: ATOMS id type x y z\n1 1 0 0 0\n")
    assert main([ensemble["first"], str(dump), "--ensemble", ensemble["p1"], "--no-progress",
                 "-o", str(tmp_path)]) == 2
    assert "LAMMPS dump with atom types (id type x y z) but no element column: give --type-map" in \
        capsys.readouterr().err
    assert main([ensemble["first"], str(dump), "--ensemble", ensemble["p1"], "--type-map", "Xx",
                 "--no-progress", "-o", str(tmp_path)]) == 2
    assert "--type-map Xx: 'Xx' not a chemical symbol" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    d = tmp_path_factory.mktemp("toys")
    return {
        "base": str(write_toy_model(d / "base.pt")),
        "float32": str(write_toy_model(d / "single.pt", "float32")),
        "cutoff": str(write_toy_model(d / "short.pt", cutoff=3.5)),
        "species": str(write_toy_model(d / "fewer.pt", species=["H", "C", "O", "Si"])),
        "seed": str(write_toy_model(d / "other.pt", seed=1)),
    }


def lammps_error(tmp_path, pair_style: str, extra: str = "", run: str = "run 0") -> str:
    script = f"""
units metal
atom_style atomic
lattice diamond 5.43
region box block 0 1 0 1 0 1
create_box 1 box
create_atoms 1 box
mass 1 28.0855
pair_style {pair_style}
pair_coeff * * Si
{extra}
{run}
"""
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path)
    return str(err.value)


def test_mismatched_models_are_refused(toys, tmp_path):
    base = toys["base"]
    rule = "all models of an ensemble must share cutoff, species and dtype"
    message = lammps_error(tmp_path, f"hienet {base} {toys['float32']} deviation every 10")
    assert f"models {base} and {toys['float32']} differ in dtype (float64 vs float32); {rule}" in message
    message = lammps_error(tmp_path, f"hienet {base} {toys['cutoff']} deviation every 10")
    assert f"models {base} and {toys['cutoff']} differ in cutoff (4 A vs 3.5 A)" in message
    message = lammps_error(tmp_path, f"hienet {base} {toys['species']} deviation every 10")
    assert (f"models {base} and {toys['species']} differ in species ({base} has [H C O Na Si Cl], "
            f"{toys['species']} has [H C O Si])") in message

    with pytest.raises(ValueError, match=f"model {base} and model {toys['float32']} differ in dtype "
                                         r"\(float64 vs float32\)"):
        HIENetCalculator([base, toys["float32"]])
    with pytest.raises(ValueError, match=r"differ in cutoff \(4.0 Å vs 3.5 Å\)"):
        HIENetCalculator([base, toys["cutoff"]])
    with pytest.raises(ValueError, match=r"differ in species"):
        HIENetCalculator([base, toys["species"]])


def test_bad_deviation_options(toys, tmp_path):
    base, seed = toys["base"], toys["seed"]
    pair = f"hienet {base} {seed} deviation"
    assert ("pair_style hienet deviation every 0: the interval must be a positive integer" in
            lammps_error(tmp_path, f"{pair} every 0"))
    assert ("pair_style hienet deviation every ten: the interval must be a positive integer" in
            lammps_error(tmp_path, f"{pair} every ten"))
    assert ("pair_style hienet deviation every 99999999999999999999: the interval must be a positive integer" in
            lammps_error(tmp_path, f"{pair} every 99999999999999999999"))
    assert ("pair_style hienet deviation relative 1e999: EPS must be a positive number" in
            lammps_error(tmp_path, f"{pair} every 5 relative 1e999"))
    assert ("pair_style hienet deviation relative -1: EPS must be a positive number" in
            lammps_error(tmp_path, f"{pair} every 5 relative -1"))
    assert "pair_style hienet deviation atomic maybe: use yes or no" in \
        lammps_error(tmp_path, f"{pair} every 5 atomic maybe")
    assert "pair_style hienet deviation needs 'every N'" in lammps_error(tmp_path, f"{pair} file x.out")
    assert "pair_style hienet deviation needs at least two model files" in \
        lammps_error(tmp_path, f"hienet {base} deviation every 5")
    assert ("several model files (an ensemble) need 'deviation every N file FILE'" in
            lammps_error(tmp_path, f"hienet {base} {seed}"))
    assert f"cannot open file {tmp_path}/no/such/dir.out for writing" in \
        lammps_error(tmp_path, f"{pair} every 5 file {tmp_path}/no/such/dir.out")
    assert "compute hienet/deviation needs an ensemble" in \
        lammps_error(tmp_path, f"hienet {base}", extra="compute d all hienet/deviation\ndump x all custom 1 "
                     f"{tmp_path}/x.dump id c_d")
    assert "compute hienet/deviation is used at step 3, but pair_style hienet computes the model deviation " \
           "every 2 steps" in lammps_error(
               tmp_path, f"{pair} every 2 file {tmp_path}/d.out",
               extra=f"compute d all hienet/deviation\nfix 1 all nve\ndump x all custom 3 {tmp_path}/x.dump id c_d",
               run="run 3")


def test_explore_example(ensemble, tmp_path):
    """examples/lammps/in.explore as shipped (console lmp), then hienet-eval on its dump
    (6 significant digits of positions: the deviations agree to about 1e-4)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hienet.evaluation.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "lammps" / "in.explore"
    lmp = Path(sys.executable).parent / "lmp"
    models = [ensemble["first"], ensemble["p1"]]
    env = dict(os.environ)
    if os.environ.get("HIENET_PLUGIN_DIR"):      # a development build, as lammps_helpers finds it
        env["LAMMPS_PLUGIN_PATH"] = os.environ["HIENET_PLUGIN_DIR"]
    proc = subprocess.run([str(lmp), "-in", str(example), "-var", "models", " ".join(models), "-var", "steps", "20",
                           "-var", "cells", "2", "-log", "none", "-nocite"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ERROR" not in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    lammps = read_devi(tmp_path / "model_devi.out")
    assert list(lammps[:, 0]) == [0, 10, 20]
    assert main([models[0], str(tmp_path / "explore.dump"), "--ensemble", models[1], "-o", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    np.testing.assert_allclose(read_devi(tmp_path / "e" / "model_devi.out"), lammps, rtol=1e-3, atol=1e-6)
