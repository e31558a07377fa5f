"""`hienet-config` (also `python -m hienet.config`): what a build against this environment needs.

Like `python -c "import torch.utils; print(torch.utils.cmake_prefix_path)"` or `pybind11 --cmakedir`,
it prints paths and versions for build scripts and module files:

    hienet-config                  # a summary
    hienet-config --cmake-prefix   # torch's CMake prefix, for -DCMAKE_PREFIX_PATH
    hienet-config --plugin-dir     # the folder of hienetplugin.so (for LAMMPS_PLUGIN_PATH)
    hienet-config --version        # the hienet version
    hienet-config --torch-version  # the installed torch, e.g. 2.13.0+cpu
    hienet-config --cuda           # the CUDA version that torch was built with, or "none"

It never imports torch (a plain file read of torch/version.py), so it is fast and works in
environments where importing torch would be slow or would need a GPU driver.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ._version import __version__


class ConfigError(RuntimeError):
    """What hienet-config cannot answer, with the reason."""


def torch_dir() -> Path:
    """The installed torch package folder, found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"torch is not installed for {sys.executable}: pip install torch")
    return Path(list(spec.submodule_search_locations)[0])


def cmake_prefix() -> str:
    """torch's CMake prefix (what torch.utils.cmake_prefix_path says): -DCMAKE_PREFIX_PATH."""
    prefix = torch_dir() / "share" / "cmake"
    if not (prefix / "Torch" / "TorchConfig.cmake").is_file():
        raise ConfigError(f"{prefix} has no Torch/TorchConfig.cmake: this torch cannot be built against")
    return str(prefix)


def _torch_version_module():
    """torch/version.py loaded on its own (a few assignments): torch itself is not imported."""
    path = torch_dir() / "version.py"
    if not path.is_file():
        raise ConfigError(f"{path} not found: a broken torch install")
    spec = importlib.util.spec_from_file_location("_hienet_config_torch_version", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_version() -> str:
    return str(_torch_version_module().__version__)


def torch_cuda() -> str:
    """CUDA version of the torch build ("13.0"), or "none" for a CPU build."""
    return getattr(_torch_version_module(), "cuda", None) or "none"


def plugin_dir() -> str:
    """The folder of the pip-built hienetplugin.so (what the lammps.plugins entry point gives)."""
    directory = Path(__file__).resolve().parent / "lammps"
    if not (directory / "hienetplugin.so").is_file():
        raise ConfigError(f"{directory} has no hienetplugin.so: hienet was installed without its C++ part")
    return str(directory)


def summary() -> str:
    lines = [f"hienet {__version__}"]
    for label, query in (("plugin dir", plugin_dir), ("torch", torch_version), ("torch CUDA", torch_cuda),
                         ("CMake prefix (-DCMAKE_PREFIX_PATH)", cmake_prefix)):
        try:
            lines.append(f"{label}: {query()}")
        except ConfigError as err:
            lines.append(f"{label}: unavailable ({err})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hienet-config",
        description="Print what a build against this environment needs (paths, versions). "
        "Without an option: a summary.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--version", action="store_true", help="the hienet version")
    group.add_argument("--cmake-prefix", action="store_true",
                       help="torch's CMake prefix, for cmake -DCMAKE_PREFIX_PATH=...")
    group.add_argument("--plugin-dir", action="store_true",
                       help="the folder of the pip-built hienetplugin.so (LAMMPS_PLUGIN_PATH)")
    group.add_argument("--torch-version", action="store_true", help="the installed torch version")
    group.add_argument("--cuda", action="store_true",
                       help="the CUDA version torch was built with, or 'none'")
    args = parser.parse_args(argv)
    queries = {"version": lambda: __version__, "cmake_prefix": cmake_prefix, "plugin_dir": plugin_dir,
               "torch_version": torch_version, "cuda": torch_cuda}
    try:
        for name, query in queries.items():
            if getattr(args, name):
                print(query())
                return 0
        print(summary())
    except ConfigError as err:
        print(f"hienet-config: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
