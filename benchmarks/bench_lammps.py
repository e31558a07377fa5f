#!/usr/bin/env python
"""Speed of pair_style hienet against Python evaluation of the same exported model.

Reports microseconds per atom per MD step for diamond Si (512 and 4096 atoms by default):

* lammps np=R   `mpirun -np R lmp`, fix nve from the same structure at 300 K, pair_style
                hienet (graph local on 1 rank, graph exchange on several); the LAMMPS
                loop time, all included
* bare model    the exported TorchScript module called on a prebuilt graph (forward +
                its internal backward), the floor for any driver
* deploy        hienet.deploy.DeployedModel.evaluate(atoms): vesin graph + model + forces
* ASE calc      hienet.HIENetCalculator(model).get_forces() on a moved structure

    python benchmarks/bench_lammps.py                       # demo model, or a toy model
    python benchmarks/bench_lammps.py --model m.pt --sizes 512 --ranks 1 2 --steps 20

All runs use the same torch threads per process (--threads, default 1; HIENET_NUM_THREADS
for LAMMPS ranks). Prints provenance (versions, model metadata) and a table; --json FILE
also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def default_model(workdir: Path) -> Path:
    demo = REPO / "hienet" / "data" / "si-demo.pt"
    if demo.is_file():
        return demo
    from toy_model import write_toy_model

    print(f"# {demo} not found: using the toy model of tests/toy_model.py")
    return write_toy_model(workdir / "toy.pt")


def silicon(n_atoms: int, seed: int = 0):
    from ase.build import bulk

    reps = round((n_atoms / 8) ** (1 / 3))
    if 8 * reps**3 != n_atoms:
        raise SystemExit(f"{n_atoms} atoms is not 8 n^3 (diamond conventional cells)")
    atoms = bulk("Si", "diamond", a=5.431, cubic=True) * (reps, reps, reps)
    atoms.rattle(0.05, seed=seed)
    return atoms


def lammps_time(model: Path, atoms, ranks: int, steps: int, threads: int, workdir: Path) -> dict:
    """LAMMPS starts from the very structure the Python evaluations see (same graph)."""
    from lammps_helpers import System, _lammps_package_dir, _mpich_lib_dir, _mpirun, plugin_dir, write_data

    data = workdir / f"si_{len(atoms)}.data"
    write_data(data, System("bench", atoms, np.arange(1, len(atoms) + 1), np.ones(len(atoms), int), ["Si"]))
    script = f"""
units metal
atom_style atomic
read_data {data}
pair_style hienet {model}
pair_coeff * * Si
velocity all create 300 12345 mom yes rot yes loop geom
fix 1 all nve
timestep 0.001
thermo {max(steps, 1)}
run 5
run {steps}
"""
    inp = workdir / f"in.bench_{len(atoms)}_{ranks}"
    inp.write_text(script)
    env = dict(os.environ, HIENET_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               LAMMPS_PLUGIN_PATH=str(plugin_dir()),
               LD_LIBRARY_PATH=":".join(p for p in [str(_mpich_lib_dir()), os.environ.get("LD_LIBRARY_PATH", "")] if p))
    cmd = [_mpirun(), "-np", str(ranks), str(_lammps_package_dir() / "lmp"), "-in", str(inp),
           "-log", "none", "-nocite"]
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"LAMMPS failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", out.stdout)
    loop, _, nsteps, natoms = loops[-1]
    pair = re.findall(r"^Pair\s*\|\s*[0-9.eE+-]+\s*\|\s*([0-9.eE+-]+)", out.stdout, re.M)
    t = float(loop)
    return {"seconds": t, "us_per_atom_step": t / (int(nsteps) * int(natoms)) * 1e6,
            "pair_us_per_atom_step": float(pair[-1]) / (int(nsteps) * int(natoms)) * 1e6 if pair else None}


def python_times(model: Path, atoms, repeats: int, threads: int) -> dict:
    import torch

    from hienet.deploy import DeployedModel
    from lammps_helpers import neighbor_graph

    torch.set_num_threads(threads)
    n = len(atoms)
    deployed = DeployedModel(model)
    module = deployed.module
    species = torch.as_tensor([deployed.species.index(s) for s in atoms.get_chemical_symbols()])
    i, j, D = neighbor_graph(atoms, deployed.cutoff)
    print(f"# {n} atoms: {len(i) / n:.1f} edges per atom within the {deployed.cutoff} A cutoff")
    edge_index = torch.as_tensor(np.stack([i, j]))
    edge_vec = torch.as_tensor(D, dtype=deployed.dtype)

    def per_atom(fn):
        for _ in range(3):                    # warm-up (TorchScript profiling runs)
            fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / (repeats * n) * 1e6

    results = {"bare_us_per_atom": per_atom(lambda: module(species, edge_index, edge_vec, n)),
               "deploy_us_per_atom": per_atom(lambda: deployed.evaluate(atoms))}
    try:
        from hienet import HIENetCalculator

        calc = HIENetCalculator(str(model))
        work = atoms.copy()
        work.calc = calc
        rng = np.random.default_rng(0)

        def ase_step():
            work.positions += 1e-4 * rng.standard_normal(work.positions.shape)
            work.get_forces()

        results["ase_us_per_atom"] = per_atom(ase_step)
    except Exception as err:  # the calculator is another engineer's; report, don't die
        print(f"# ASE calculator not timed: {err}")
        results["ase_us_per_atom"] = None
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="exported model (default: hienet/data/si-demo.pt or a toy)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="timed MD steps per LAMMPS run")
    parser.add_argument("--repeats", type=int, default=5, help="timed Python evaluations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from hienet import __version__
    from lammps_helpers import read_metadata

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = (args.model or default_model(workdir)).resolve()
        meta = read_metadata(model)
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        print(f"# hienet {__version__} (git {git or '?'}), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {args.threads} torch thread(s) per process")
        print(f"# model {model}: {meta['dtype']}, cutoff {meta['cutoff']} A, "
              f"{meta['num_message_passing_layers']} layers, species {' '.join(meta['species'])}")
        rows = []
        for size in args.sizes:
            atoms = silicon(size)
            row = {"atoms": size}
            for ranks in args.ranks:
                row[f"lammps_np{ranks}"] = lammps_time(model, atoms, ranks, args.steps, args.threads, workdir)
            row.update(python_times(model, atoms, args.repeats, args.threads))
            rows.append(row)

        print(f"\n{'atoms':>6} " + " ".join(f"{'lammps np=' + str(r):>13}" for r in args.ranks)
              + f" {'bare model':>11} {'deploy':>9} {'ASE calc':>9}   (us/atom/step)")
        for row in rows:
            cells = " ".join(f"{row[f'lammps_np{r}']['us_per_atom_step']:13.1f}" for r in args.ranks)
            ase = row["ase_us_per_atom"]
            print(f"{row['atoms']:>6} {cells} {row['bare_us_per_atom']:11.1f} {row['deploy_us_per_atom']:9.1f} "
                  f"{ase if ase is None else format(ase, '9.1f'):>9}")
        if args.json:
            args.json.write_text(json.dumps({"model": str(model), "metadata": {k: meta[k] for k in ("dtype", "cutoff", "num_message_passing_layers", "species")},
                                             "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
