"""The CUDA part of the operator library compiles, on a machine without a GPU or CUDA torch.

cpp/ops/cuda/ has one CUDA source, convolution_kernels.cu (no torch header: nvcc -c for sm_80
and sm_90 with C++17, as CMake builds it), and two torch-side sources that include c10's CUDA
headers, compiled by the host compiler against the headers of CUDA builds of torch: 2.14.1
with C++20 (the newest; it refuses C++17) and 2.11.0 with C++17 (what the GPU machines have).
Warnings in our code are errors. Linking needs the CUDA torch libraries: `make check-cuda-build` does that.
"""
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from torch_headers import header_flags, torch_include

CUDA_SOURCES = Path(__file__).resolve().parent.parent / "cpp" / "ops" / "cuda"
TORCH_SIDE = ["convolution_launch.cpp", "convolution_cuda.cpp"]
WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]


def cuda_home() -> Path:
    """The CUDA toolkit (CUDA_HOME, the nvcc on PATH, /usr/local/cuda), or a skip saying why."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), nvcc and Path(nvcc).resolve().parent.parent, "/usr/local/cuda"]
    for home in (Path(c) for c in candidates if c):
        if os.access(home / "bin" / "nvcc", os.X_OK) and (home / "include" / "cuda_runtime_api.h").is_file():
            return home
    pytest.skip("no CUDA toolkit (nvcc and cuda_runtime_api.h) in CUDA_HOME, beside the nvcc on PATH "
                "or in /usr/local/cuda: the CUDA sources cannot be compiled here")


def compile_all(commands):
    """Run the compilers in parallel; fail naming every command that failed, with its output."""
    def run(command):
        return command, subprocess.run(command, capture_output=True, text=True, cwd=CUDA_SOURCES)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(run, commands))
    failures = [f"$ {' '.join(c)}\n{r.stdout}{r.stderr}"[-4000:] for c, r in results if r.returncode != 0]
    assert not failures, "\n\n".join(failures)


def torch_side(include: Path, standard: str, home: Path):
    # torch's and CUDA's headers as system headers: warnings are errors in our code only
    system = [f"-isystem{flag[2:]}" for flag in header_flags(include)] + [f"-isystem{home / 'include'}"]
    return [["c++", f"-std={standard}", "-fsyntax-only", *WARNINGS, *system, source]
            for source in TORCH_SIDE]


def test_cuda_sources_compile_against_torch_2_14_with_cxx20(torch_2_14_include, tmp_path):
    home = cuda_home()
    nvcc = [str(home / "bin" / "nvcc"), "-c", "-std=c++17", "-O3",
            "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
            "--Werror", "all-warnings", f"-Xcompiler={','.join(WARNINGS)}",
            "convolution_kernels.cu", "-o", str(tmp_path / "kernels.o")]
    compile_all([nvcc, *torch_side(torch_2_14_include, "c++20", home)])


def test_torch_side_compiles_against_torch_2_11_with_cxx17():
    """The GPU machines' torch (2.11, C++17): its headers, if pip has the wheel locally."""
    home = cuda_home()
    include, why = torch_include("2.11.0")
    if include is None:
        pytest.skip(why)
    compile_all(torch_side(include, "c++17", home))
