"""HIENet on a GPU against the same on the CPU: the runtime's lean step, the ASE calculator,
pair_style hienet (serial, 2 ranks sharing one GPU, MD) and hienet-train.

Marker `cuda`: skipped where torch sees no GPU; tests/gpu/run.sh runs them on one. Its dry run
rehearses them on the CPU (HIENET_CUDA_REHEARSAL=1: `gpu_device` is "cpu", runs are shorter),
so that their code has run before a GPU is available; a rehearsal compares the CPU with itself
and proves nothing about a GPU.

Tolerances (float64): the GPU sums in other orders (cuBLAS, reductions), so results agree to
round-off of the largest terms: 1e-10 relative for the runtime and the ASE calculator, 1e-8
absolute (eV, eV/Å) for LAMMPS, as on the CPU between rank counts; trained weights to 1e-6.
"""
import copy
import os

import numpy as np
import pytest
import torch

from lammps_helpers import make_systems, nve_run, read_results, run_lammps, runtime, run_system
from test_device_step import image_pairs, moved, pair_graph
from toy_model import write_toy_model

pytestmark = pytest.mark.cuda

SYSTEMS = make_systems()
REHEARSAL = not torch.cuda.is_available()
# a rehearsal only has to run the code: one structure where a GPU run takes several
STRUCTURES = ("mixed",) if REHEARSAL else ("mixed", "si_diamond", "triclinic")


def close(got, want, relative, what=""):
    """max |got - want| <= relative * max(1, max |want|)"""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= relative * scale, f"{what}: off by {err:.3e} (bound {relative * scale:.1e})"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Files of the C++ runtime and LAMMPS: the toy (plain TorchScript) and a tiny HIENet with
    each convolution kernel (the fused one runs hienet::convolution's CUDA kernels), float64."""
    from hienet.export.exporter import export_model
    from test_lammps_hienet_model import tiny_model

    d = tmp_path_factory.mktemp("gpu_models")
    files = {"toy": write_toy_model(d / "toy.pt")}
    for kernel in ("fused",) if REHEARSAL else ("fused", "e3nn"):    # the same code either way
        export_model(tiny_model(), d / f"tiny-{kernel}.pt", dtype="float64", convolution=kernel)
        files[f"hienet-{kernel}"] = d / f"tiny-{kernel}.pt"
    files.setdefault("hienet-e3nn", files["hienet-fused"])
    return files


# ---- the runtime's lean step ------------------------------------------------------------
@pytest.mark.parametrize("name", ["toy", "hienet-fused", "hienet-e3nn"])
def test_lean_step_on_gpu_matches_cpu(exported, gpu_device, name):
    """Topology kept on the GPU while atoms move (pairs cross the cutoff), every step equal to
    the CPU's host step; two evaluations of the same step are bitwise equal (no atomics)."""
    rt = runtime()
    gpu = rt.Model(str(exported[name]), device=gpu_device, step="device")
    cpu = rt.Model(str(exported[name]), device="cpu", step="host")
    assert gpu.step == "device" and gpu.device.startswith(gpu_device)
    rng = np.random.default_rng(0)
    for serial, system in enumerate(STRUCTURES[:2], start=1):
        atoms = SYSTEMS[system].atoms
        species, points, pp, pn = pair_graph(atoms, gpu.species, gpu.cutoff)
        for step in range(3):
            now = atoms if step == 0 else moved(atoms, rng, 0.25)
            got = gpu.evaluate_pairs(species, points(now), pp, pn, len(now), 9, topology=serial)
            assert gpu.last_step["topology_uploaded"] == (step == 0)
            want = cpu.evaluate_pairs(species, points(now), pp, pn, len(now), 9)
            for key in ("energy", "atom_energy", "forces", "virial", "atom_virial"):
                close(got[key], want[key], 1e-10, f"{name} {system} step {step} {key}")
        again = gpu.evaluate_pairs(species, points(now), pp, pn, len(now), 9, topology=serial)
        for key in ("energy", "forces", "virial", "atom_virial"):
            assert np.array_equal(again[key], got[key]), f"{name}: {key} differs between two identical steps"


def test_lean_step_copies_once_each_way(exported, gpu_device):
    """A step with a kept topology: one host-to-device and one device-to-host copy (CUDA
    activity of the torch profiler), whatever the model does inside."""
    from torch.profiler import ProfilerActivity, profile

    rt = runtime()
    for name in ("toy", "hienet-fused"):
        model = rt.Model(str(exported[name]), device=gpu_device, step="device")
        atoms = SYSTEMS["mixed"].atoms
        species, points, pp, pn = pair_graph(atoms, model.species, model.cutoff)
        model.evaluate_pairs(species, points(atoms), pp, pn, len(atoms), 6, topology=5)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu_device == "cuda" else [])
        with profile(activities=activities) as prof:
            model.evaluate_pairs(species, points(moved(atoms, np.random.default_rng(1), 0.1)), pp, pn,
                                 len(atoms), 6, topology=5)
        names = [e.name for e in prof.events()]
        to_device = sum(n.startswith("Memcpy HtoD") for n in names)
        to_host = sum(n.startswith("Memcpy DtoH") for n in names)
        assert model.last_step["uploads"] == 1 and model.last_step["downloads"] == 1
        if gpu_device == "cuda":
            assert (to_device, to_host) == (1, 1), f"{name}: {to_device} uploads, {to_host} downloads"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exchange_on_gpu_moves_only_rows_with_images(tmp_path, gpu_device, dtype):
    rt = runtime()
    path = write_toy_model(tmp_path / "toy.pt", dtype)
    gpu = rt.Model(str(path), device=gpu_device, step="device")
    cpu = rt.Model(str(path), device="cpu", step="host")
    atoms = SYSTEMS["si_diamond"].atoms * (2, 1, 1)
    species, points, pp, pn, owner = image_pairs(atoms, gpu.species, gpu.cutoff)
    n = len(atoms)
    got = gpu.evaluate_pairs(species, points(atoms), pp, pn, n, 9, topology=1, owner=owner)
    want = cpu.evaluate_pairs(species, points(atoms), pp, pn, n, 9, owner=owner, all_owners=True)
    assert gpu.last_step["owners_with_images"] == len(np.unique(owner[n:])) < n
    for key in ("energy", "atom_energy", "forces", "virial", "atom_virial"):
        close(got[key], want[key], 1e-10 if dtype == "float64" else 1e-5, f"{dtype} {key}")


# ---- the ASE calculator ------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["fused", "e3nn"])
def test_ase_calculator_on_gpu_matches_cpu(gpu_device, kernel):
    from conftest import make_model
    from hienet import HIENetCalculator

    model = make_model("small", seed=1)
    calculators = {device: HIENetCalculator(copy.deepcopy(model), device=device, dtype="float64",
                                            convolution=kernel)
                   for device in ("cpu", gpu_device)}
    for name in STRUCTURES:
        results = {}
        for device, calc in calculators.items():
            atoms = SYSTEMS[name].atoms.copy()
            atoms.calc = calc
            results[device] = (atoms.get_potential_energy(), atoms.get_potential_energies(),
                               atoms.get_forces(), atoms.get_stress())
        for k, what in enumerate(("energy", "energies", "forces", "stress")):
            close(results[gpu_device][k], results["cpu"][k], 1e-10, f"{kernel} {name} {what}")


# ---- pair_style hienet -------------------------------------------------------------------
def compare_lammps(got, want, atol, what):
    for key in ("energy", "energies", "forces", "virial", "atom_virial", "centroid_virial"):
        err = float(np.abs(np.asarray(getattr(got, key)) - np.asarray(getattr(want, key))).max(initial=0.0))
        assert err <= atol, f"{what}: {key} off by {err:.3e}"


@pytest.mark.parametrize("name", ["toy", "hienet-fused", "hienet-e3nn"])
def test_lammps_device_cuda_matches_device_cpu(tmp_path, exported, gpu_device, name):
    """Energy, per-atom energy, forces, global and per-atom virials (stress/atom and
    centroid/stress/atom) within 1e-8, serial (graph local)."""
    for system_name in STRUCTURES:
        system = SYSTEMS[system_name]
        results = {device: run_system(tmp_path, exported[name], system, pair_style_args=f"device {device}",
                                      tag=f"{system_name}_{device}_")
                   for device in ("cpu", gpu_device)}
        compare_lammps(results[gpu_device], results["cpu"], 1e-8, f"{name} {system_name}")


def test_lammps_two_ranks_share_one_gpu(tmp_path, exported, gpu_device):
    """graph exchange on 2 ranks, both on the one GPU (device auto: local rank % GPUs), against
    one CPU rank (graph local)."""
    from lammps_helpers import lammps_script

    system = SYSTEMS["mixed"]
    serial = run_system(tmp_path, exported["hienet-fused"], system, pair_style_args="device cpu", tag="serial_")
    script = lammps_script(tmp_path, exported["hienet-fused"], system, tag="pair_",
                           pair_style_args=f"device {gpu_device} graph exchange")
    output = run_lammps(script, tmp_path, nprocs=2)
    assert "graph exchange" in output and f"device {gpu_device}" in output
    shared = read_results(tmp_path, "pair_").in_order_of(system.ids)
    compare_lammps(shared, serial, 1e-8, "2 ranks on one GPU")


def test_lammps_lean_step_equals_host_step_on_gpu(tmp_path, gpu_device):
    """The same MD (200 steps, many neighbour-list builds) with HIENET_STEP=host and device."""
    import re

    from test_lammps_device_step import md_script

    model = write_toy_model(tmp_path / "toy.pt")
    series = {}
    for step in ("host", "device"):
        script = md_script(model, tmp_path, step, steps=60 if REHEARSAL else 200).replace(
            f"pair_style hienet {model}", f"pair_style hienet {model} device {gpu_device}")
        out = run_lammps(script, tmp_path, nprocs=1, env={"HIENET_STEP": step})
        assert int(re.search(r"Neighbor list builds = (\d+)", out).group(1)) >= (2 if REHEARSAL else 5)
        series[step] = np.loadtxt(tmp_path / f"{step}energy.txt")
    close(series["device"][:, 1:3] / 216, series["host"][:, 1:3] / 216, 1e-10, "energies")


def test_si_demo_float32_nve_on_gpu(tmp_path, gpu_device):
    """si-demo exported in float32, NVE on the GPU: the total energy stays within the bound
    of the CPU's float64 run (tests/test_demo_model.py: 2e-4 eV/atom over 900 fs, after 100 fs
    of settling)."""
    from hienet.checkpoint import load_model
    from hienet.export.exporter import export_model
    from hienet.pretrained import bundled_model_path

    if REHEARSAL:    # the bundled export (float64) spares the rehearsal an export
        path = bundled_model_path("si-demo", exported=True)
    else:
        path = tmp_path / "si-demo-float32.pt"
        export_model(load_model(bundled_model_path("si-demo")), path, dtype="float32")
    steps = 110 if REHEARSAL else 1000
    etotal, ke = nve_run(path, tmp_path, lattice=5.47, temperature=2400, pair_args=f"device {gpu_device}",
                         steps=steps)
    settled = etotal[10:]
    drift = float(np.abs(settled - settled[0]).max())
    print(f"si-demo float32 on {gpu_device}: max |E - E(100 fs)| = {drift:.2e} eV/atom over {steps - 100} fs")
    assert ke.mean() > 0.05 and drift < 2e-4


# ---- hienet-train --------------------------------------------------------------------------
def test_training_on_gpu_equals_cpu(tmp_path, gpu_device):
    """2 epochs of hienet-train (tiny preset, float64, deterministic) on the GPU and the CPU:
    the same weights to 1e-6."""
    import ase.io
    import yaml

    from hienet.checkpoint import load_checkpoint
    from hienet.train.cli import main as train_main
    from test_train import base_config, lj_frames

    data = tmp_path / "lj.extxyz"
    ase.io.write(data, lj_frames(6, seed=0), format="extxyz")
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    weights = {}
    try:
        for device in ("cpu", gpu_device):
            config = base_config(data, tmp_path / device, epochs=2, device=device)
            path = tmp_path / f"{device}.yaml"
            path.write_text(yaml.safe_dump(config))
            assert train_main([str(path), "--no-progress"]) == 0
            weights[device] = load_checkpoint(tmp_path / device / "checkpoint_last.pth")["state_dict"]
    finally:    # the trainer switches torch to deterministic algorithms for CUDA runs
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    assert weights["cpu"].keys() == weights[gpu_device].keys()
    for key, want in weights["cpu"].items():
        got = weights[gpu_device][key]
        if torch.is_floating_point(want):
            close(got.cpu().double().numpy(), want.double().numpy(), 1e-6, key)
