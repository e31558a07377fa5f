"""Shared fixtures: reference data of the official HIENet implementation, small models and a
fresh held-out Si data set."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# Small fixture copied into the repo; the large `full` model lives beside the project.
LOCAL_REFERENCE = TESTS / "data" / "hienet_official"
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "hienet_official"
IN_CI = os.environ.get("CI", "").lower() == "true"

SMALL_SPECIES = ["C", "Cl", "Cu", "Fe", "H", "Na", "O", "Si"]


def reference_file(relative: str) -> Path:
    """A reference file; missing is a failure in CI and a skip elsewhere."""
    for root in (LOCAL_REFERENCE, SHARED_REFERENCE):
        if (root / relative).is_file():
            return root / relative
    message = f"reference file {relative} not found in {LOCAL_REFERENCE} or {SHARED_REFERENCE}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def load_reference(relative: str):
    return json.loads(reference_file(relative).read_text())["structures"]


@pytest.fixture(scope="session")
def structures():
    import ase.io

    return ase.io.read(reference_file("structures.extxyz"), ":")


@pytest.fixture(scope="session")
def official_small():
    """Our model converted from the official small checkpoint (float64, eval)."""
    from hienet.official import model_from_official

    model, _ = model_from_official(reference_file("small/checkpoint_like.pth"), dtype=torch.float64)
    return model


def make_model(preset="small", seed=0, **overrides):
    """A randomly initialised model (float64, eval) with non-trivial weights everywhere."""
    from hienet.model import build_model, make_config

    torch.manual_seed(seed)
    overrides.setdefault("species", SMALL_SPECIES)
    overrides.setdefault("conv_denominator", 10.0)
    overrides.setdefault("shift", [-float(i + 1) for i in range(len(overrides["species"]))])
    overrides.setdefault("scale", 1.3)
    model = build_model(make_config(preset, **overrides)).double().eval()
    with torch.no_grad():  # LayerNorm affine terms start at 1/0: make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def held_out_path(tmp_path_factory):
    """20 Si structures labelled with the SNAP reference potential, regenerated for the session
    with a seed used for neither training (0) nor the README's test set (1)."""
    path = tmp_path_factory.mktemp("heldout") / "si_heldout.extxyz"
    subprocess.run(
        [sys.executable, str(REPO / "examples/data/generate_si_data.py"), "--out", str(path),
         "--n-structures", "20", "--seed", "7", "--jobs", "2"],
        check=True, capture_output=True,
    )
    return path


REHEARSAL = os.environ.get("HIENET_CUDA_REHEARSAL", "") == "1"


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a GPU: skip them, saying why, where torch sees none. In a
    rehearsal (HIENET_CUDA_REHEARSAL=1, the dry run of tests/gpu/run.sh) those that take their
    GPU from the `gpu_device` fixture run on the CPU instead, so that their code is exercised."""
    if torch.cuda.is_available():
        return
    reason = f"no CUDA device (torch {torch.__version__}, cuda {torch.version.cuda}): runs in tests/gpu/run.sh"
    for item in items:
        # the marker, not item.keywords: those also hold the names of parent folders (a
        # checkout in a folder named cuda would skip every test)
        if item.get_closest_marker("cuda") is not None and not (
                REHEARSAL and "gpu_device" in item.fixturenames):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def gpu_device() -> str:
    """The device of a test marked `cuda`: "cuda", or "cpu" in a rehearsal (see above)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def torch_2_14_include():
    """torch 2.14.1's C++ headers (the CUDA 13.0 build pip takes from local disk), or a skip
    that says why: compile-only checks of C++20 and of the CUDA sources."""
    from torch_headers import torch_include

    include, why = torch_include("2.14.1")
    if include is None:
        pytest.skip(why)
    return include
