"""The HIENet operator library `libhienet_ops.so` (custom TorchScript operators, `cpp/ops/`).

`load()` registers `torch.ops.hienet.convolution` (the fused equivariant convolution) and its
backward with torch, once per process. Exported files that use them name them in their
metadata (`custom_ops`); the C++ runtime and `pair_style hienet` link the same library.
"""
from pathlib import Path
from typing import List

import torch

LIBRARY_FILE = "libhienet_ops.so"
#: the operators the library defines (exported files list those they call)
OPERATORS = (
    "hienet::convolution",
    "hienet::convolution_backward",
    "hienet::convolution_radial",
    "hienet::convolution_available",
)


class OpsLibraryError(RuntimeError):
    """The operator library is missing or cannot be loaded."""


def library_path() -> Path:
    return Path(__file__).resolve().parent / LIBRARY_FILE


def _registered(name: str = "hienet::convolution") -> bool:
    namespace, op = name.split("::", 1)
    try:
        getattr(getattr(torch.ops, namespace), op)
    except (AttributeError, RuntimeError):
        return False
    return True


def load() -> None:
    """Load the library (idempotent); raise OpsLibraryError naming the file if impossible."""
    if _registered():
        return
    path = library_path()
    if not path.is_file():
        raise OpsLibraryError(
            f"the HIENet operator library {path} is missing (the C++ part of hienet was not "
            "built: run `make venv` or `pip install --no-build-isolation .`); use the e3nn "
            "convolution kernel instead (convolution='e3nn')"
        )
    try:
        torch.ops.load_library(str(path))
    except OSError as err:
        raise OpsLibraryError(f"cannot load the HIENet operator library {path}: {err}") from None


def load_error() -> str:
    """Why `load()` fails, or '' when it works."""
    try:
        load()
    except OpsLibraryError as err:
        return str(err)
    return ""


def available() -> bool:
    """True when the operator library is (or can be) loaded."""
    try:
        load()
    except OpsLibraryError:
        return False
    return True


def missing_operators(names: List[str]) -> List[str]:
    """Those of `names` ('ns::op') that no loaded library has registered (after loading ours)."""
    if any(name in OPERATORS for name in names):
        available()
    return [name for name in names if not _registered(name)]


def cpu_capability() -> str:
    """Instruction set of the CPU kernels in use: 'avx512', 'avx2' or 'baseline'."""
    load()
    return torch.ops.hienet.cpu_capability()


def has_kernels(device) -> bool:
    """True when the fused convolution has kernels for tensors on `device` ('cpu', 'cuda',
    a torch.device): always on the CPU, on a GPU when the library was built with CUDA kernels.
    Asks torch's dispatcher, as the model does (`hienet.model.convolution.fused_runs_on`)."""
    if not available():
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    return key is not None and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
        for name in ("hienet::convolution", "hienet::convolution_backward")
    )
