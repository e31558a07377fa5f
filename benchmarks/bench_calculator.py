"""µs/atom/step of the ASE calculator (energy + forces + stress) on diamond Si, CPU.

    python benchmarks/bench_calculator.py [--presets hienet-v3 small] [--sizes 64 216 512]

Each row is the median of `--repeats` evaluations after one warm-up, with atoms rattled
between steps (as in MD). Ratios are only meaningful within one run on one machine.
"""
import argparse
import platform
import time

import numpy as np
import torch
from ase.build import bulk

from hienet import __version__
from hienet.calculator import HIENetCalculator
from hienet.model import build_model, make_config

SUPERCELLS = {8: (1, 1, 1), 64: (2, 2, 2), 216: (3, 3, 3), 512: (4, 4, 4), 4096: (8, 8, 8)}


def silicon(n_atoms: int):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(SUPERCELLS[n_atoms])
    atoms.rattle(0.02, seed=1)
    return atoms


def time_calculator(calc, atoms, repeats: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_forces()
    atoms.get_stress()
    times = []
    for step in range(repeats):
        atoms.positions += np.random.default_rng(step).normal(0, 1e-3, atoms.positions.shape)
        start = time.perf_counter()
        atoms.get_forces()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "hienet-v3"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 216, 512])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"hienet {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, CPU")
    print(f"{'preset':>10} {'atoms':>6} {'dtype':>8} {'s/step':>9} {'µs/atom/step':>13}")
    for preset in args.presets:
        torch.manual_seed(0)
        model = build_model(make_config(preset, species=["Si"], conv_denominator=20.0, shift=-5.4))
        for dtype in args.dtypes:
            calc = HIENetCalculator(model, dtype=dtype)
            for n in args.sizes:
                seconds = time_calculator(calc, silicon(n), args.repeats)
                print(f"{preset:>10} {n:>6} {dtype:>8} {seconds:>9.4f} {1e6 * seconds / n:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
