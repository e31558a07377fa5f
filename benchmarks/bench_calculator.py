"""µs/atom/step of the ASE calculator (energy + forces + stress) on diamond Si, CPU, with the
e3nn and the fused convolution kernel (same weights, interleaved in one process).

    python benchmarks/bench_calculator.py [--presets si-demo hienet-v3] [--sizes 512 4096]
    python benchmarks/bench_calculator.py --quick

Columns: time per atom and step for each kernel and their ratio; the fused operator's share
of a fused step (torch profiler: hienet::convolution + its backward, self time); the peak
resident memory of one step in a fresh subprocess (VmHWM: the model, the graph and the
step's tensors) for each kernel and their ratio. `si-demo` is the bundled checkpoint, the
other names are config presets with random weights. Each time is the fastest of `--repeats`
steps after one warm-up, atoms moved between steps (as in MD). Ratios are only meaningful
within one run on one machine.
"""
import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from hienet import __version__

REPO = Path(__file__).resolve().parents[1]
SUPERCELLS = {8: (1, 1, 1), 64: (2, 2, 2), 216: (3, 3, 3), 512: (4, 4, 4), 4096: (8, 8, 8)}


def silicon(n_atoms: int):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(SUPERCELLS[n_atoms])
    atoms.rattle(0.02, seed=1)
    return atoms


def make_model(preset: str, kernel: str):
    if preset == "si-demo":
        from hienet.checkpoint import load_model

        model = load_model(REPO / "hienet" / "data" / "si-demo.pth")
    else:
        from hienet.model import build_model, make_config

        torch.manual_seed(0)
        model = build_model(make_config(preset, species=["Si"], conv_denominator=28.0, shift=-5.4))
    model.set_convolution(kernel)
    return model


def calculator(preset, kernel, dtype):
    from hienet.calculator import HIENetCalculator

    return HIENetCalculator(make_model(preset, kernel), dtype=dtype)


def step(atoms, rng):
    atoms.positions += rng.normal(0, 1e-3, atoms.positions.shape)
    atoms.get_forces()
    atoms.get_stress()


def time_kernels(preset, n, dtype, kernels, repeats):
    """Fastest seconds per step of each kernel, interleaved (other processes only slow a step)."""
    systems = {}
    for kernel in kernels:
        atoms = silicon(n)
        atoms.calc = calculator(preset, kernel, dtype)
        step(atoms, np.random.default_rng(0))    # warm-up
        systems[kernel] = atoms
    times = {k: [] for k in kernels}
    for r in range(repeats):
        for kernel, atoms in systems.items():
            start = time.perf_counter()
            step(atoms, np.random.default_rng(r))
            times[kernel].append(time.perf_counter() - start)
    return {k: float(np.min(v)) for k, v in times.items()}


def operator_share(preset, n, dtype):
    """Fraction of a fused step's CPU self time spent in hienet::convolution(_backward)."""
    from torch.profiler import ProfilerActivity, profile

    atoms = silicon(n)
    atoms.calc = calculator(preset, "fused", dtype)
    step(atoms, np.random.default_rng(0))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(atoms, np.random.default_rng(1))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ours = sum(e.self_cpu_time_total for e in events if e.key.startswith("hienet::convolution"))
    return ours / total


def peak_memory_mb(preset, n, dtype, kernel, threads):
    """VmHWM of a fresh process that loads the model and runs one step."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch; "
            f"torch.set_num_threads({threads}); import bench_calculator as b, numpy as np; "
            f"a = b.silicon({n}); a.calc = b.calculator({preset!r}, {kernel!r}, {dtype!r}); "
            "b.step(a, np.random.default_rng(0)); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["si-demo", "hienet-v3"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 4096])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--kernels", nargs="+", default=["e3nn", "fused"], choices=["e3nn", "fused"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="preset:size:dtype runs to leave out, e.g. hienet-v3:4096:float64")
    parser.add_argument("--quick", action="store_true", help="si-demo and small, 216 atoms, float64, 2 repeats")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.presets, args.sizes, args.dtypes, args.repeats = ["si-demo", "small"], [216], ["float64"], 2
    torch.set_num_threads(args.threads)
    from hienet import ops

    print(f"# hienet {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, CPU, operator kernels {ops.cpu_capability()}")
    header = (f"{'preset':>10} {'atoms':>6} {'dtype':>8} "
              + " ".join(f"{k + ' µs':>10}" for k in args.kernels)
              + f" {'speed-up':>8} {'op share':>8} "
              + " ".join(f"{k + ' MB':>9}" for k in args.kernels) + f" {'memory':>7}")
    print(header, flush=True)
    rows = []
    for preset in args.presets:
        for dtype in args.dtypes:
            for n in args.sizes:
                if f"{preset}:{n}:{dtype}" in args.skip:
                    continue
                seconds = time_kernels(preset, n, dtype, args.kernels, args.repeats)
                row = {"preset": preset, "atoms": n, "dtype": dtype,
                       "us_per_atom_step": {k: 1e6 * s / n for k, s in seconds.items()}}
                row["operator_share"] = operator_share(preset, n, dtype) if "fused" in args.kernels else None
                row["peak_mb"] = ({} if args.no_memory else
                                  {k: peak_memory_mb(preset, n, dtype, k, args.threads) for k in args.kernels})
                rows.append(row)
                us, mb = row["us_per_atom_step"], row["peak_mb"]
                both = "e3nn" in us and "fused" in us
                print(f"{preset:>10} {n:>6} {dtype:>8} " + " ".join(f"{us[k]:10.1f}" for k in args.kernels)
                      + f" {us['e3nn'] / us['fused'] if both else float('nan'):8.2f}"
                      + f" {100 * (row['operator_share'] or float('nan')):7.1f}% "
                      + " ".join(f"{mb.get(k, float('nan')):9.0f}" for k in args.kernels)
                      + f" {mb['e3nn'] / mb['fused'] if both and mb else float('nan'):7.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
