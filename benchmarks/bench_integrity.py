"""Load-time cost of the archive-digest check (export/FORMAT.md, "Integrity").

    python benchmarks/bench_integrity.py [--quick] [--repeats 5]

Exports a randomly initialised model of the `hienet-v3` preset (7.5 M parameters, 89 species;
`--quick`: the `small` preset) in float32 and float64, then times, interleaved in one process:

* `digest (C++)`:    hienet::archive_digest, what Model's constructor (pair_style hienet) adds;
* `load (C++)`:      hienet::Model(path), TorchScript load + metadata + digest check;
* `digest (Python)`: hienet.integrity.archive_digest, what DeployedModel adds;
* `jit.load`:        torch.jit.load(path), the rest of DeployedModel's load.

Medians of `--repeats` after one warm-up. Ratios are meaningful within one run only.
"""
import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hienet import __version__
from hienet.integrity import archive_digest
from hienet.model import build_model, make_config


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small preset instead of hienet-v3")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from ase.data import chemical_symbols

    from hienet import _runtime
    from hienet.export import export_model

    preset = "small" if args.quick else "hienet-v3"
    species = chemical_symbols[1:90]
    torch.manual_seed(0)
    model = build_model(make_config(preset, species=species)).double().eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"hienet {__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; preset {preset}, {n_params:,} parameters")
    header = f"{'dtype':8} {'MB':>7} {'digest C++ s':>13} {'load C++ s':>11} {'digest Py s':>12} {'jit.load s':>11} {'C++ digest/load':>16}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            path = Path(tmp) / f"{preset}-{dtype}.pt"
            export_model(copy.deepcopy(model), path, dtype=dtype)  # export casts in place
            mb = path.stat().st_size / 1e6
            digest_cpp = median_time(lambda: _runtime.archive_digest(str(path)), args.repeats)
            load_cpp = median_time(lambda: _runtime.Model(str(path), device="cpu", num_threads=0), args.repeats)
            digest_py = median_time(lambda: archive_digest(path), args.repeats)
            jit_load = median_time(lambda: torch.jit.load(str(path)), args.repeats)
            print(f"{dtype:8} {mb:7.1f} {digest_cpp:13.3f} {load_cpp:11.3f} {digest_py:12.3f} {jit_load:11.3f} "
                  f"{digest_cpp / load_cpp:16.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
