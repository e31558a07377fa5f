#!/usr/bin/env python
"""pair_style hienet against the bare exported model, with the e3nn and the fused convolution.

Reports microseconds per atom per MD step for diamond Si (512 and 4096 atoms by default), for
each model (`si-demo`: the bundled checkpoint; `hienet-v3`: the official architecture with
random weights, float32) exported twice from the same weights, once per convolution kernel:

* lammps np=R   `mpirun -np R lmp` (np=1: `lmp` directly), fix nve from the same structure at
                300 K, pair_style hienet (graph local on 1 rank, graph exchange on several);
                the LAMMPS loop time, all included; and the peak resident memory of the lmp
                process (VmHWM, the largest rank)
* bare model    the exported TorchScript module called on a prebuilt graph (forward + its
                internal backward), as the C++ runtime calls it: the floor for any driver
* runtime       hienet._runtime.Model.evaluate on the prebuilt graph (the C++ evaluator that
                the pair style calls: model + forces + virial)
* deploy        hienet.deploy.DeployedModel.evaluate(atoms): vesin graph + model + forces
* ASE eager     hienet.HIENetCalculator on the checkpoint (eager model, same kernel)

The last columns give the speed-up of the fused kernel over e3nn in LAMMPS, the memory ratio,
and the pair style's overhead over the bare module (lammps np=1 / bare model).

    python benchmarks/bench_lammps.py                         # si-demo and hienet-v3, 512 and 4096
    python benchmarks/bench_lammps.py --quick                 # si-demo, 512 atoms, few steps
    python benchmarks/bench_lammps.py --models si-demo --sizes 512 --kernels fused --steps 50

All runs use the same torch threads per process (--threads, default 2; HIENET_NUM_THREADS for
LAMMPS ranks). Timings are the fastest of several within one run (the fastest LAMMPS chunk of
steps, the fastest Python call): compare ratios, not runs. --json FILE also
writes the numbers.
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

# Peak RSS of a child process: run it from a small Python parent that reports ru_maxrss.
_MAXRSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print('#maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def make_model(name: str):
    """(eager HIENet, dtype) for a model name: the bundled si-demo, or a preset with random weights."""
    import torch

    if name == "si-demo":
        from hienet.checkpoint import load_model

        return load_model(REPO / "hienet" / "data" / "si-demo.pth", dtype=torch.float64), "float64"
    from hienet.model import build_model, make_config

    torch.manual_seed(0)
    model = build_model(make_config(name, species=["Si"], conv_denominator=28.0, shift=-5.4)).eval()
    return model, "float32"


def silicon(n_atoms: int, seed: int = 0):
    from ase.build import bulk

    reps = round((n_atoms / 8) ** (1 / 3))
    if 8 * reps**3 != n_atoms:
        raise SystemExit(f"{n_atoms} atoms is not 8 n^3 (diamond conventional cells)")
    atoms = bulk("Si", "diamond", a=5.431, cubic=True) * (reps, reps, reps)
    atoms.rattle(0.05, seed=seed)
    return atoms


def lammps_time(model: Path, atoms, ranks: int, steps: int, threads: int, workdir: Path) -> dict:
    """LAMMPS starts from the very structure the Python evaluations see (same graph). The
    steps run in chunks; the fastest chunk counts (other processes on the machine only ever
    slow a chunk down), the peak memory is that of the whole run."""
    chunks = min(5, steps)
    chunk = max(1, steps // chunks)
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
run 3
""" + f"run {chunk}\n" * chunks
    inp = workdir / f"in.bench_{len(atoms)}_{ranks}"
    inp.write_text(script)
    env = dict(os.environ, HIENET_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               LAMMPS_PLUGIN_PATH=str(plugin_dir()),
               LD_LIBRARY_PATH=":".join(p for p in [str(_mpich_lib_dir()), os.environ.get("LD_LIBRARY_PATH", "")] if p))
    lmp = [str(_lammps_package_dir() / "lmp"), "-in", str(inp), "-log", "none", "-nocite"]
    cmd = [sys.executable, "-c", _MAXRSS] + (lmp if ranks == 1 else [_mpirun(), "-np", str(ranks)] + lmp)
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"LAMMPS failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", out.stdout)
    pairs = re.findall(r"^Pair\s*\|\s*[0-9.eE+-]+\s*\|\s*([0-9.eE+-]+)", out.stdout, re.M)
    maxrss = int(re.findall(r"#maxrss (\d+)", out.stdout)[-1])
    timed = list(zip(loops, pairs))[1:]    # after the warm-up run
    best = min(range(len(timed)), key=lambda k: float(timed[k][0][0]) / int(timed[k][0][2]))
    (loop, _, nsteps, natoms), pair = timed[best]
    per = int(nsteps) * int(natoms)
    return {"seconds": float(loop), "us_per_atom_step": float(loop) / per * 1e6,
            "pair_us_per_atom_step": float(pair) / per * 1e6, "peak_mb": maxrss / 1024}


def python_times(exported: Path, eager, atoms, repeats: int) -> dict:
    """Fastest of interleaved calls: bare module, C++ runtime, deploy, ASE eager."""
    import torch

    from hienet import HIENetCalculator
    from hienet._runtime import Model
    from hienet.deploy import DeployedModel
    from lammps_helpers import neighbor_graph

    n = len(atoms)
    deployed = DeployedModel(exported)
    runtime = Model(str(exported), device="cpu", num_threads=torch.get_num_threads())
    species = torch.as_tensor([deployed.species.index(s) for s in atoms.get_chemical_symbols()])
    i, j, D = neighbor_graph(atoms, deployed.cutoff)
    edge_index = torch.as_tensor(np.stack([i, j]))
    edge_vec = torch.as_tensor(D, dtype=deployed.dtype)
    calc = HIENetCalculator(eager, dtype=str(deployed.dtype).split(".")[1])
    work = atoms.copy()
    work.calc = calc
    rng = np.random.default_rng(0)

    def ase_step():
        work.positions += 1e-4 * rng.standard_normal(work.positions.shape)
        work.get_forces()

    fns = {"bare": lambda: deployed(species, edge_index, edge_vec, n),
           "runtime": lambda: runtime.evaluate(species.numpy(), edge_index.numpy(), D, n),
           "deploy": lambda: deployed.evaluate(atoms),
           "ase": ase_step}
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {f"{k}_us_per_atom": float(np.min(v)) / n * 1e6 for k, v in times.items()} | {
        "edges_per_atom": len(i) / n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["si-demo", "hienet-v3"],
                        help="si-demo (bundled, float64) and/or presets with random weights (float32)")
    parser.add_argument("--kernels", nargs="+", default=["e3nn", "fused"], choices=["e3nn", "fused"])
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"],
                        help="export dtypes (default: float64 for si-demo, float32 for presets)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=20, help="timed MD steps per LAMMPS run")
    parser.add_argument("--repeats", type=int, default=5, help="timed Python evaluations")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="model:kernel:size[:dtype] runs to leave out (memory, time), e.g. hienet-v3:e3nn:4096")
    parser.add_argument("--quick", action="store_true", help="si-demo, 512 atoms, 5 steps, 2 repeats")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.sizes, args.steps, args.repeats = ["si-demo"], [512], 5, 2

    import torch

    from hienet import __version__, ops
    from hienet.export.exporter import export_model

    torch.set_num_threads(args.threads)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"# hienet {__version__} (git {git or '?'}), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.threads} torch thread(s) per process, kernels ISA {ops.cpu_capability()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.models:
            eager, natural = make_model(name)
            for dtype, kernel in [(d, k) for d in (args.dtypes or [natural]) for k in args.kernels]:
                exported = workdir / f"{name}-{kernel}-{dtype}.pt"
                export_model(eager, exported, dtype=dtype, convolution=kernel)
                eager.set_convolution(kernel)
                for size in args.sizes:
                    if any(f"{name}:{k}:{size}" in args.skip for k in (kernel, f"{kernel}:{dtype}")):
                        continue
                    atoms = silicon(size)
                    row = {"model": name, "dtype": dtype, "kernel": kernel, "atoms": size}
                    for ranks in args.ranks:
                        row[f"lammps_np{ranks}"] = lammps_time(exported, atoms, ranks, args.steps, args.threads, workdir)
                    row.update(python_times(exported, eager, atoms, args.repeats))
                    rows.append(row)
                    print(f"# {name} {kernel} {size}: done", flush=True)

    ranks = args.ranks
    print(f"\n{'model':>9} {'dtype':>7} {'kernel':>6} {'atoms':>6} "
          + " ".join(f"{'lmp np=' + str(r):>10}" for r in ranks)
          + f" {'bare':>9} {'runtime':>9} {'deploy':>9} {'ASE':>9} {'lmp/bare':>8} {'peak MB':>8}   (us/atom/step)")
    for row in rows:
        cells = " ".join(f"{row[f'lammps_np{r}']['us_per_atom_step']:10.1f}" for r in ranks)
        overhead = row[f"lammps_np{ranks[0]}"]["us_per_atom_step"] / row["bare_us_per_atom"]
        print(f"{row['model']:>9} {row['dtype']:>7} {row['kernel']:>6} {row['atoms']:>6} {cells} "
              f"{row['bare_us_per_atom']:9.1f} {row['runtime_us_per_atom']:9.1f} {row['deploy_us_per_atom']:9.1f} "
              f"{row['ase_us_per_atom']:9.1f} {overhead:8.3f} {row[f'lammps_np{ranks[0]}']['peak_mb']:8.0f}")
    pairs = [(a, b) for a in rows for b in rows if a["kernel"] == "e3nn" and b["kernel"] == "fused"
             and (a["model"], a["dtype"], a["atoms"]) == (b["model"], b["dtype"], b["atoms"])]
    if pairs:
        print(f"\nfused vs e3nn (same weights, np={ranks[0]}): speed-up = e3nn / fused time, memory = e3nn / fused peak")
        print(f"{'model':>9} {'dtype':>7} {'atoms':>6} {'LAMMPS':>8} {'bare':>8} {'ASE':>8} {'memory':>8}")
        for a, b in pairs:
            la, lb = a[f"lammps_np{ranks[0]}"], b[f"lammps_np{ranks[0]}"]
            print(f"{a['model']:>9} {a['dtype']:>7} {a['atoms']:>6} {la['us_per_atom_step'] / lb['us_per_atom_step']:8.2f} "
                  f"{a['bare_us_per_atom'] / b['bare_us_per_atom']:8.2f} {a['ase_us_per_atom'] / b['ase_us_per_atom']:8.2f} "
                  f"{la['peak_mb'] / lb['peak_mb']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
