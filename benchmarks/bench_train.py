#!/usr/bin/env python
"""hienet-train at scale: data-parallel throughput and the memory of streamed data.

1. Throughput (CPU): structures per second of the si-demo configuration
   (examples/train/si_demo.yaml, one torch thread per process) on 1 process and on 2 processes
   (torchrun, gloo), same global batch; the ratio (target >= 1.6 with 2 processes). Each run
   trains `--epochs` epochs on a seeded subset of `--structures` structures without validation;
   an epoch's structures/s is structures / its time_s in metrics.csv, the first epoch (warm-up)
   left out and the median of the others kept. The runs are interleaved `--repeats` times and the
   fastest of each kept, so that the ratio is comparable within one run on a shared machine.
2. Memory: the peak resident set (ru_maxrss) of a one-process run over the whole data set, data in
   memory against data streamed from disk (no cache), at 1x and 4x the data set (the file
   repeated); one epoch each. DataLoader workers are off here (num_workers 0), so the one process
   holds everything the rank holds: graphs in memory, or the index and the batches in flight.
3. `--gpu`: structures/s of one GPU fine-tuning HIENet-V3 (`--init-checkpoint HIENet-V3.pth`;
   without it the `hienet-v3` preset, the same architecture with fresh weights), float32.

Data: examples/data/si_train.extxyz, generated when missing (examples/data/generate_si_data.py,
400 structures, seed 0, about a minute on 2 cores).

    python benchmarks/bench_train.py                    # 1 and 2 (throughput, memory)
    python benchmarks/bench_train.py --quick            # 48 structures, 1 repeat, memory at 1x only
    python benchmarks/bench_train.py --no-memory --batch-size 16   # more structures per process
    python benchmarks/bench_train.py --gpu --init-checkpoint HIENet-V3.pth
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = REPO / "examples" / "data" / "si_train.extxyz"


def ensure_data(path: Path) -> Path:
    if not path.is_file():
        print(f"# generating {path} (400 structures, seed 0)", flush=True)
        subprocess.run([sys.executable, str(REPO / "examples" / "data" / "generate_si_data.py"), "--out", str(path),
                        "--n-structures", "400", "--seed", "0", "--jobs", str(min(2, os.cpu_count() or 1))],
                       check=True)
    return path


def subset(source: Path, n: int, out: Path, seed: int = 0) -> Path:
    import ase.io
    import numpy as np

    frames = ase.io.read(source, ":")
    pick = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(out, [frames[i] for i in pick], format="extxyz")
    return out


def repeated(source: Path, times: int, out: Path) -> Path:
    text = source.read_text()
    out.write_text(text * times)
    return out


def si_demo_config(train_file: Path, out: Path, **overrides) -> dict:
    config = yaml.safe_load((REPO / "examples" / "train" / "si_demo.yaml").read_text())
    config["data"].update(train=str(train_file), validation_fraction=0.0)
    config.update(output_dir=str(out), progress=False, num_threads=1, device="cpu")
    for key, value in overrides.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


def train(config: dict, workdir: Path, name: str, processes: int = 1) -> dict:
    """Runs hienet-train (torchrun for several processes); returns epoch times and the peak RSS."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [str(BIN / "hienet-train"), str(path)]
    if processes > 1:
        cmd = [str(BIN / "torchrun"), "--nproc_per_node", str(processes), "--no-python", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(workdir / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss of this child (VmHWM), in kB
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n" + (workdir / f"{name}.log").read_text()[-3000:])
    import csv

    with open(Path(config["output_dir"]) / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) > 0]
    return {"epoch_s": [float(r["time_s"]) for r in rows], "maxrss_mb": usage.ru_maxrss / 1024}


def balance_bound(train_file: Path, batch_size: int, processes: int, epochs: int, seed: int = 0) -> float:
    """Mean over steps of (atoms per rank if evenly spread) / (atoms of the busiest rank), for the
    trainer's split of each global batch: the best parallel efficiency the batches allow when the
    cost of a structure is its atom count (every rank waits for the busiest at each step)."""
    import numpy as np

    from hienet.train.sampler import epoch_order, split_batch
    from hienet.train.streaming import index_file

    sizes = index_file(train_file, want_species=False)[0].natoms
    even = busiest = 0.0
    for epoch in range(1, epochs + 1):
        order = epoch_order(len(sizes), seed, epoch)
        for start in range(0, len(sizes), batch_size):
            loads = [sizes[part].sum() for part in split_batch(order[start:start + batch_size], processes, sizes)]
            even += np.sum(loads) / processes
            busiest += max(loads)
    return even / busiest


def throughput(runs: dict, structures: int, repeats: int) -> dict:
    """{name: best structures/s over the repeats} of interleaved runs."""
    best = {}
    for _ in range(repeats):
        for name, run in runs.items():
            times = run()["epoch_s"]
            rate = structures / statistics.median(times[1:] or times)
            best[name] = max(best.get(name, 0.0), rate)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="training data (default: the si-demo set)")
    parser.add_argument("--structures", type=int, default=160, help="structures of the throughput runs")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the throughput runs (first = warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (the fastest is kept)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the data-parallel run")
    parser.add_argument("--quick", action="store_true", help="48 structures, 1 repeat, memory at 1x only")
    parser.add_argument("--no-memory", action="store_true", help="skip part 2")
    parser.add_argument("--gpu", action="store_true", help="only part 3: one-GPU fine-tuning throughput of V3")
    parser.add_argument("--init-checkpoint", help="--gpu: the official HIENet-V3.pth")
    parser.add_argument("--batch-size", type=int, help="global batch (default: si-demo's 4; --gpu: 32)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.structures, args.repeats = 48, 1
    from hienet.train.streaming import index_file

    data = ensure_data(args.data)
    results = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform()}}
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start; "
          "one run, the machine may be shared")
    with tempfile.TemporaryDirectory(prefix="hienet-bench-train-") as tmp:
        work = Path(tmp)
        small = subset(data, args.structures, work / "subset.extxyz")
        if args.gpu:
            return gpu_throughput(args, small, work, results)

        # 1. throughput ------------------------------------------------------------------------
        def run(processes):
            name = f"p{processes}"
            overrides = {"epochs": args.epochs}
            if args.batch_size:
                overrides["batch_size"] = args.batch_size
            return lambda: train(si_demo_config(small, work / name, **overrides), work, name, processes)

        P = args.processes
        best = throughput({"1 process": run(1), f"{P} processes": run(P)}, args.structures, args.repeats)
        ratio = best[f"{P} processes"] / best["1 process"]
        batch = args.batch_size or si_demo_config(small, work)["batch_size"]
        bound = balance_bound(small, batch, P, args.epochs)
        print(f"\n# si-demo, {args.structures} structures, batch {batch} (global), 1 torch thread per process, gloo")
        for name, rate in best.items():
            print(f"{name:>12}: {rate:7.1f} structures/s")
        print(f"{'ratio':>12}: {ratio:7.2f}x with {P} processes (target >= 1.6)")
        print(f"{'bound':>12}: {P * bound:7.2f}x: the batches' split by atoms allows at most {100 * bound:.0f} % "
              f"parallel efficiency (mixed 2- to 64-atom cells, {batch // P} per process)")
        results["throughput"] = {**best, "ratio": ratio, "structures": args.structures, "balance_bound": P * bound}

        # 2. memory ----------------------------------------------------------------------------
        if args.no_memory:
            return 0
        print("\n# peak resident memory of one rank, one epoch over the whole set (num_workers 0)")
        print(f"{'data':>10} {'structures':>10} {'in memory MB':>13} {'streamed MB':>12}")
        results["memory"] = []
        for times in ((1,) if args.quick else (1, 4)):
            file = data if times == 1 else repeated(data, times, work / f"x{times}.extxyz")
            row = {"times": times}
            for mode, stream in (("memory", False), ("stream", True)):
                config = si_demo_config(file, work / f"{mode}{times}", epochs=1, num_workers=0,
                                        data={"stream": stream, "cache_size": 0})
                row[mode] = train(config, work, f"{mode}{times}")["maxrss_mb"]
            row["structures"] = len(index_file(file, want_species=False)[0])
            print(f"{str(times) + 'x':>10} {row['structures']:>10} {row['memory']:13.0f} {row['stream']:12.0f}")
            results["memory"].append(row)
        if len(results["memory"]) > 1:
            first, last = results["memory"][0], results["memory"][-1]
            print(f"{'4x / 1x':>10} {'':>10} {last['memory'] / first['memory']:13.2f} "
                  f"{last['stream'] / first['stream']:12.2f}   (target: flat when streamed)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def gpu_throughput(args, data: Path, work: Path, results: dict) -> int:
    import torch

    if not torch.cuda.is_available():
        print("--gpu: torch sees no CUDA device", file=sys.stderr)
        return 2
    args.batch_size = args.batch_size or 32
    overrides = dict(epochs=args.epochs, device="cuda", dtype="float32", batch_size=args.batch_size, num_threads=None)
    config = si_demo_config(data, work / "gpu", **overrides)
    if args.init_checkpoint:
        config.pop("model")
        config["init_checkpoint"] = str(Path(args.init_checkpoint).resolve())
        config["statistics"] = {"shift": "refit", "scale": "keep", "conv_denominator": "keep"}
        what = f"fine-tuning {args.init_checkpoint}"
    else:
        config["model"] = {"preset": "hienet-v3"}
        what = "the hienet-v3 preset (V3 architecture, fresh weights)"
    best = throughput({"1 GPU": lambda: train(config, work, "gpu")}, args.structures, args.repeats)
    print(f"\n# {torch.cuda.get_device_name()}: {what}, {args.structures} Si structures, batch {args.batch_size}, float32")
    print(f"{'1 GPU':>12}: {best['1 GPU']:7.1f} structures/s")
    results["gpu"] = {**best, "device": torch.cuda.get_device_name(), "model": what}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
