#!/usr/bin/env python
"""pair_style hienet on several MPI ranks: graph exchange against graph ghost and one rank.

For diamond Si (rattled, read from the same data file by every run) and the bundled si-demo
model exported in float32 and float64, this prints per configuration

* us/atom/step of the LAMMPS loop (fix nve), timed after 5 warm-up steps,
* the parallel efficiency t1 / (R * tR) against one rank (graph local),
* nodes (local + ghost) and edges per rank, from the pair style's log line (max over ranks),
* peak memory (VmHWM, the maximum resident set) of each rank,

for 1 rank (graph local), R ranks in graph exchange (a cutoff + skin ghost shell, features
exchanged between layers) and R ranks in graph ghost (a layers x cutoff + skin shell).
Configurations of one (dtype, size) are interleaved, --repeats times, and the fastest of
each is kept, so ratios are comparable within a run even on a busy machine.

Then a HIENet-V3-sized model (random weights in the official layout, float32) on 1 and R
ranks, and a table of the work per rank at 1k, 10k and 100k atoms per rank (cubic
subdomains) for both modes, computed from the density and edges per atom measured here.

    python benchmarks/bench_parallel.py                 # the full table (see memory below)
    python benchmarks/bench_parallel.py --quick         # 1,728 atoms, 5 steps, small V3 run
    python benchmarks/bench_parallel.py --sizes 4096 --dtypes float64 --ranks 2 --steps 5

One torch thread per rank (--threads sets HIENET_NUM_THREADS). --json FILE also writes the
numbers. Memory: with the fused convolution (the default export) si-demo keeps about 0.25 MB
per atom (float64) for the backward pass, so 32,768 atoms fit on one rank of a 24 GB machine;
graph ghost on 2 ranks needs more; --no-ghost skips graph ghost.
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
sys.path.insert(0, str(REPO / "benchmarks"))

SKIN = 2.0    # LAMMPS's default neighbour skin in metal units

# Runs each rank and reports its peak resident set (ru_maxrss of the child = its VmHWM).
RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:], close_fds=False)    # keep the PMI socket
print("HIENET_BENCH_MAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)
sys.exit(code)
"""


def export_si_demo(dtype: str, workdir: Path) -> Path:
    from hienet.export.exporter import export_model
    from hienet.pretrained import bundled_model_path
    from hienet.checkpoint import load_model

    path = workdir / f"si-demo-{dtype}.pt"
    export_model(load_model(bundled_model_path("si-demo")), path, dtype=dtype)
    return path


def export_v3_sized(workdir: Path) -> Path:
    """HIENet-V3 sizes (7.5 M parameters with all species), random weights, float32."""
    import torch

    from hienet.export.exporter import export_model
    from hienet.model import build_model, make_config

    torch.manual_seed(0)
    config = make_config("hienet-v3", species=["Si"], conv_denominator=30.0, shift=[-5.0], scale=1.0)
    path = workdir / "v3-sized-float32.pt"
    model = build_model(config).eval()
    export_model(model, path, dtype="float32")
    return path


def write_silicon(n_atoms: int, workdir: Path) -> tuple[Path, dict]:
    from bench_lammps import silicon
    from lammps_helpers import System, neighbor_graph, write_data

    atoms = silicon(n_atoms)
    path = workdir / f"si_{n_atoms}.data"
    write_data(path, System("bench", atoms, np.arange(1, n_atoms + 1), np.ones(n_atoms, int), ["Si"]))
    i, _, _ = neighbor_graph(atoms, 5.0)
    return path, {"density": n_atoms / atoms.get_volume(), "edges_per_atom": len(i) / n_atoms}


def run_lammps(model: Path, data: Path, ranks: int, mode: str, steps: int, threads: int,
               workdir: Path, warmup: int = 5) -> dict:
    """One LAMMPS run: `run warmup` (TorchScript's profiling executor optimises its graphs
    during the first calls), then `run steps`, timed."""
    from lammps_helpers import _lammps_package_dir, _mpich_lib_dir, _mpirun, plugin_dir

    script = f"""
units metal
atom_style atomic
read_data {data}
pair_style hienet {model} graph {mode}
pair_coeff * * Si
velocity all create 300 12345 mom yes rot yes loop geom
fix 1 all nve
timestep 0.001
thermo {max(steps, 1)}
run {warmup}
run {steps}
"""
    inp = workdir / f"in.{data.stem}_{ranks}_{mode}"
    inp.write_text(script)
    wrapper = workdir / "rss_wrapper.py"
    wrapper.write_text(RSS_WRAPPER)
    env = dict(os.environ, HIENET_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               LAMMPS_PLUGIN_PATH=str(plugin_dir()),
               LD_LIBRARY_PATH=":".join(p for p in [str(_mpich_lib_dir()), os.environ.get("LD_LIBRARY_PATH", "")] if p))
    cmd = [_mpirun(), "-np", str(ranks), sys.executable, str(wrapper), str(_lammps_package_dir() / "lmp"),
           "-in", str(inp), "-log", "none", "-nocite"]
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if out.returncode != 0 or "ERROR" in out.stdout:
        raise SystemExit(f"LAMMPS failed ({' '.join(cmd)}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", out.stdout)
    loop, _, nsteps, natoms = loops[-1]
    sizes = re.findall(r"graph per rank \(min/max over \d+ ranks\): local nodes (\d+)/(\d+), "
                       r"ghost nodes (\d+)/(\d+), edges (\d+)/(\d+)", out.stdout)
    local_lo, local_hi, ghost_lo, ghost_hi, edges_lo, edges_hi = map(int, sizes[-1])
    rss = [int(v) / 1024 for v in re.findall(r"HIENET_BENCH_MAXRSS_KB (\d+)", out.stdout)]
    return {"seconds": float(loop), "us_per_atom_step": float(loop) / (int(nsteps) * int(natoms)) * 1e6,
            "local_nodes_max": local_hi, "ghost_nodes_max": ghost_hi, "edges_max": edges_hi,
            "nodes_max": local_hi + ghost_hi, "peak_mb_per_rank": rss}


def interleaved(configs, repeats):
    """{name: fastest result} over `repeats` rounds of running every config in turn."""
    best = {}
    for _ in range(repeats):
        for name, run in configs.items():
            result = run()
            if name not in best or result["us_per_atom_step"] < best[name]["us_per_atom_step"]:
                best[name] = result
    return best


def table_line(dtype, size, name, r) -> str:
    return (f"{dtype:>7} {size:>6} {name:<22} {r['us_per_atom_step']:12.1f} {r['efficiency']:10.0%} "
            f"{r['nodes_max']:>10} {r['ghost_nodes_max']:>11} {r['edges_max']:>10} "
            f"{'/'.join(f'{m:.0f}' for m in r['peak_mb_per_rank']):>13}")


def shell_counts(atoms_per_rank: float, density: float, edges_per_atom: float, cutoff: float,
                 layers: int) -> dict:
    """Nodes and edges of one cubic subdomain of `atoms_per_rank` atoms in both modes.

    exchange: local atoms + ghosts within cutoff + skin of the subdomain; edges centred on
      local atoms only.
    ghost: local atoms + ghosts within `layers` hops (~ layers x cutoff); every edge of a
      node within layers - 1 hops (~ (layers - 1) x cutoff) is evaluated.
    """
    side = (atoms_per_rank / density) ** (1 / 3)

    def inside(margin):
        return density * (side + 2 * margin) ** 3

    return {
        "exchange_nodes": inside(cutoff + SKIN),
        "exchange_edges": atoms_per_rank * edges_per_atom,
        "ghost_nodes": inside(layers * cutoff),
        "ghost_edges": inside((layers - 1) * cutoff) * edges_per_atom,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1,728 atoms, 5 timed steps, one round, V3-sized model on 216 atoms: "
                             "under 4 GB per configuration, for a small shared machine")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--ranks", type=int, default=2, help="ranks of the parallel runs")
    parser.add_argument("--steps", type=int, default=10, help="timed MD steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds (the fastest is kept)")
    parser.add_argument("--v3-size", type=int, default=512, help="atoms for the V3-sized model (0: skip)")
    parser.add_argument("--no-ghost", action="store_true", help="skip graph ghost (memory-hungry at large sizes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.repeats, args.v3_size = [1728], 5, 1, 216

    import torch

    from hienet import __version__

    R = args.ranks
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"# hienet {__version__} (git {git or '?'}), torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {args.threads} torch thread(s) per rank")
    print(f"# diamond Si, si-demo (cutoff 5 A, 3 layers); {args.steps} timed steps after 5 warm-up steps; "
          f"fastest of {args.repeats} interleaved round(s)")
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": []}
    geometry = None
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        models = {dtype: export_si_demo(dtype, workdir) for dtype in args.dtypes}
        header = (f"{'dtype':>7} {'atoms':>6} {'configuration':<22} {'us/atom/step':>12} {'efficiency':>10} "
                  f"{'nodes/rank':>10} {'ghosts/rank':>11} {'edges/rank':>10} {'peak MB/rank':>13}")
        print("\n" + header)
        for size in args.sizes:
            data, geometry = write_silicon(size, workdir)
            for dtype in args.dtypes:
                configs = {"1 rank, local": lambda: run_lammps(models[dtype], data, 1, "local", args.steps, args.threads, workdir),
                           f"{R} ranks, exchange": lambda: run_lammps(models[dtype], data, R, "exchange", args.steps, args.threads, workdir)}
                if not args.no_ghost:
                    configs[f"{R} ranks, ghost"] = lambda: run_lammps(models[dtype], data, R, "ghost", args.steps, args.threads, workdir)
                best = interleaved(configs, args.repeats)
                t1 = best["1 rank, local"]["us_per_atom_step"]
                for name, r in best.items():
                    ranks = 1 if name.startswith("1 ") else R
                    r["efficiency"] = t1 / (ranks * r["us_per_atom_step"])
                    print(table_line(dtype, size, name, r), flush=True)
                    results["rows"].append({"dtype": dtype, "atoms": size, "configuration": name, **r})

        if args.v3_size:
            v3 = export_v3_sized(workdir)
            data, _ = write_silicon(args.v3_size, workdir)
            v3_steps = 1 if args.quick else max(1, args.steps // 5)
            best = interleaved({"1 rank, local": lambda: run_lammps(v3, data, 1, "local", v3_steps, args.threads, workdir, 2),
                                f"{R} ranks, exchange": lambda: run_lammps(v3, data, R, "exchange", v3_steps, args.threads, workdir, 2)},
                               1)
            t1 = best["1 rank, local"]["us_per_atom_step"]
            print(f"\n# HIENet-V3-sized model (random weights, official layout, float32), {args.v3_size} atoms, "
                  f"{v3_steps} timed step(s)")
            print(header)
            for name, r in best.items():
                ranks = 1 if name.startswith("1 ") else R
                r["efficiency"] = t1 / (ranks * r["us_per_atom_step"])
                print(table_line("float32", args.v3_size, name, r))
                results["rows"].append({"dtype": "float32", "atoms": args.v3_size, "model": "v3-sized",
                                        "configuration": name, **r})

    # ---- per-rank work at scale, from the measured density and edges per atom ----------
    print(f"\n# work per rank for cubic subdomains (density {geometry['density']:.4f} atoms/A^3, "
          f"{geometry['edges_per_atom']:.1f} edges per atom at 5 A, ghost shell cutoff + skin = 7 A in "
          f"exchange, 3 x 5 A in ghost); HIENet-V3 (5 layers) in the last columns")
    print(f"{'atoms/rank':>10} {'exchange nodes':>14} {'exchange edges':>14} {'ghost nodes':>12} {'ghost edges':>12} "
          f"{'edge ratio':>10} {'V3 ghost edges':>15} {'V3 ratio':>9}")
    for n in (1_000, 10_000, 100_000):
        c = shell_counts(n, geometry["density"], geometry["edges_per_atom"], 5.0, 3)
        v3 = shell_counts(n, geometry["density"], geometry["edges_per_atom"], 5.0, 5)
        print(f"{n:>10,} {c['exchange_nodes']:>14,.0f} {c['exchange_edges']:>14,.0f} {c['ghost_nodes']:>12,.0f} "
              f"{c['ghost_edges']:>12,.0f} {c['ghost_edges'] / c['exchange_edges']:>10.1f} "
              f"{v3['ghost_edges']:>15,.0f} {v3['ghost_edges'] / v3['exchange_edges']:>9.1f}")
        results.setdefault("scaling", []).append({"atoms_per_rank": n, "si_demo": c, "v3": v3})
    print(f"# total wall time {time.time() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
