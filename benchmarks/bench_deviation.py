#!/usr/bin/env python
"""Cost of the model deviation in LAMMPS: MD with `pair_style hienet m1 m2 m3 m4 deviation
every 10` against plain MD with m1 alone (goal: at most 40 % more time per step).

One lmp process runs both, interleaved: chunks of --chunk steps of plain MD (pair_style hienet
m1.pt) and of MD with the deviation (pair_style hienet m1.pt ... mK.pt deviation every N),
one after the other, --repeats times each, from the same continuing trajectory (fix nve,
diamond Si at 300 K). Chunks start at multiples of N, so each deviation chunk evaluates the
ensemble on chunk / N of its steps, exactly the long-run share. The fastest chunk of each kind
counts (other processes only ever slow a chunk down): the ratio is measured in one run.

The models are the bundled si-demo (float64) and K - 1 exports of it with perturbed weights
(the same architecture, so the same cost per evaluation): the ideal overhead is
(K - 1) / N = 30 % for K = 4, N = 10; what the deviation adds beyond the evaluations (the
force table, one reverse communication in graph exchange, the MPI reductions, the line of
the file) shows as the excess over that.

    python benchmarks/bench_deviation.py                      # 512 atoms, 4 models, every 10
    python benchmarks/bench_deviation.py --atoms 4096 --ranks 2 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
GOAL = 0.40


def ensemble_files(workdir: Path, k: int) -> list:
    """si-demo.pt and k - 1 exports of its checkpoint with weights times (1 + 0.02 noise)."""
    import torch

    from hienet.checkpoint import load_model
    from hienet.export.exporter import export_model
    from hienet.pretrained import bundled_model_path

    paths = [bundled_model_path("si-demo", exported=True)]
    for m in range(1, k):
        model = load_model(bundled_model_path("si-demo"), dtype=torch.float64)
        torch.manual_seed(m)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + 0.02 * torch.randn_like(p))
        path = workdir / f"member{m}.pt"
        export_model(model, path)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, default=512, help="diamond Si atoms (8 n^3)")
    parser.add_argument("--models", type=int, default=4, help="models in the ensemble (K)")
    parser.add_argument("--every", type=int, default=10, help="deviation every N steps")
    parser.add_argument("--chunk", type=int, default=20, help="steps per timed chunk (a multiple of --every)")
    parser.add_argument("--repeats", type=int, default=5, help="chunks of each kind")
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks (graph exchange on several)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (HIENET_NUM_THREADS)")
    args = parser.parse_args(argv)
    if args.chunk % args.every:
        parser.error("--chunk must be a multiple of --every")
    reps = round((args.atoms / 8) ** (1 / 3))
    if 8 * reps**3 != args.atoms:
        parser.error(f"{args.atoms} atoms is not 8 n^3 (diamond conventional cells)")

    import torch

    from hienet import __version__
    from lammps_helpers import _lammps_package_dir, _mpich_lib_dir, _mpirun, plugin_dir

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"# hienet {__version__} (git {git or '?'}), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.ranks} rank(s) x "
          f"{args.threads} torch thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        models = ensemble_files(workdir, args.models)
        plain = f"pair_style hienet {models[0]}\npair_coeff * * Si\n"
        devi = (f"pair_style hienet {' '.join(models)} deviation every {args.every} file {workdir}/model_devi.out\n"
                "pair_coeff * * Si\n")
        script = f"""
units metal
atom_style atomic
lattice diamond 5.431
region box block 0 {reps} 0 {reps} 0 {reps}
create_box 1 box
create_atoms 1 box
mass 1 28.0855
displace_atoms all random 0.05 0.05 0.05 2024
{plain}
velocity all create 300 12345 mom yes rot yes loop geom
fix 1 all nve
timestep 0.001
thermo {args.chunk}
run {args.chunk}
""" + (f"{plain}run {args.chunk}\n{devi}run {args.chunk}\n") * args.repeats
        inp = workdir / "in.bench"
        inp.write_text(script)
        env = dict(os.environ, HIENET_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
                   LAMMPS_PLUGIN_PATH=str(plugin_dir()),
                   LD_LIBRARY_PATH=":".join(p for p in [str(_mpich_lib_dir()), os.environ.get("LD_LIBRARY_PATH", "")] if p))
        lmp = [str(_lammps_package_dir() / "lmp"), "-in", str(inp), "-log", "none", "-nocite"]
        cmd = lmp if args.ranks == 1 else [_mpirun(), "-np", str(args.ranks)] + lmp
        out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
        if out.returncode != 0 or "ERROR" in out.stdout:
            raise SystemExit(f"LAMMPS failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        loops = [float(t) for t in re.findall(r"Loop time of ([0-9.eE+-]+) on", out.stdout)][1:]  # after warm-up
        lines = (workdir / "model_devi.out").read_text().splitlines()
    plain_times, devi_times = np.array(loops[0::2]), np.array(loops[1::2])
    per = args.chunk * args.atoms
    t_plain, t_devi = plain_times.min() / per * 1e6, devi_times.min() / per * 1e6
    overhead = t_devi / t_plain - 1.0
    ideal = (args.models - 1) / args.every
    print(f"si-demo float64, {args.atoms} atoms, {args.models} models, deviation every {args.every} steps, "
          f"{args.repeats} interleaved chunks of {args.chunk} steps each (fastest counts)")
    print(f"plain MD         {t_plain:8.2f} us/atom/step   (chunks: {', '.join(f'{t / per * 1e6:.1f}' for t in plain_times)})")
    print(f"with deviation   {t_devi:8.2f} us/atom/step   (chunks: {', '.join(f'{t / per * 1e6:.1f}' for t in devi_times)})")
    print(f"overhead {100 * overhead:.1f} % (ideal (K-1)/N = {100 * ideal:.0f} %, goal <= {100 * GOAL:.0f} %): "
          f"{'OK' if overhead <= GOAL else 'ABOVE GOAL'}; {len(lines) - 1} lines in the last chunk's model_devi.out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
