"""Batched evaluation (`hienet-eval`'s Predictor) against the ASE calculator one structure at a
time, on test sets of rattled and strained diamond Si cells, CPU.

    python benchmarks/bench_eval.py [--quick] [--models si-demo] [--batch-sizes 1 4 16 64]

Both ways compute energy, forces and stress of the same structures. Each round runs every
variant once, interleaved (so a busy machine slows all of them alike); the table gives the
median over rounds and the speed-up against the calculator loop of the same round. Ratios
are only meaningful within one run on one machine.
"""
import argparse
import platform
import time

import numpy as np
import torch
from ase.build import bulk

from hienet import __version__
from hienet.calculator import HIENetCalculator
from hienet.evaluation import Predictor

SETS = {"2-8 atoms": [(1, 1, 1, "primitive"), (1, 1, 1, "cubic")], "64 atoms": [(2, 2, 2, "cubic")]}


def test_set(name: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        nx, ny, nz, kind = SETS[name][k % len(SETS[name])]
        atoms = bulk("Si", "diamond", a=rng.uniform(5.35, 5.55), cubic=kind == "cubic").repeat((nx, ny, nz))
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        frames.append(atoms)
    return frames


def calculator_loop(calc, frames):
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.get_forces()
        atoms.get_stress()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 structures per set, 2 rounds")
    parser.add_argument("--models", nargs="+", default=["si-demo"], help="model paths or bundled names")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--structures", type=int, default=64)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.quick:
        args.structures, args.rounds = 16, 2
        args.batch_sizes = [b for b in args.batch_sizes if b <= 16]
    torch.set_num_threads(args.threads)
    print(f"hienet {__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, CPU, dtype {args.dtype}, {args.structures} structures per set, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'model':>10} {'set':>10} {'way':>22} {'s/set':>9} {'ms/structure':>13} {'speed-up':>9}")
    for model in args.models:
        calc = HIENetCalculator(model, dtype=args.dtype)
        predictor = Predictor(model, dtype=args.dtype)
        for name in SETS:
            frames = test_set(name, args.structures)
            variants = {"calculator, one by one": lambda: calculator_loop(calc, frames)}
            for b in args.batch_sizes:
                variants[f"batched, {b} per pass"] = (lambda b=b: predictor.predict(frames, batch_size=b))
            for run in variants.values():  # warm-up
                run()
            times = {k: [] for k in variants}
            for _ in range(args.rounds):
                for k, run in variants.items():
                    start = time.perf_counter()
                    run()
                    times[k].append(time.perf_counter() - start)
            base = float(np.median(times["calculator, one by one"]))
            for k, t in times.items():
                t = float(np.median(t))
                print(f"{str(model)[:10]:>10} {name:>10} {k:>22} {t:>9.3f} {1e3 * t / len(frames):>13.2f} "
                      f"{base / t:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
