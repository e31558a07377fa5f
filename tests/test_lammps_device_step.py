"""pair_style hienet on the lean GPU step (HIENET_STEP=device), run on the CPU: the tensor
operations a GPU runs, through LAMMPS, against the host step (the CPU default) and the Python
reference. The pair style keeps nodes and candidate pairs between neighbour-list builds and
hands the runtime a new topology serial at each build (lammps_plugin/hienet_graph.h); these
runs rebuild many times, move atoms across ranks and exchange features (graph exchange on 2
ranks)."""
import re

import numpy as np
import pytest

from lammps_helpers import lammps_script, make_systems, read_results, run_lammps
from test_lammps_pair import compare, expected
from toy_model import write_toy_model

STEPS = 200


def md_script(model, workdir, tag, steps=STEPS):
    """216 Si at 1500 K, neighbour lists checked every step: many builds in 200 fs."""
    return f"""
units metal
atom_style atomic
lattice diamond 5.8
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 28.0855
pair_style hienet {model}
pair_coeff * * Si
neighbor 0.5 bin
neigh_modify every 1 delay 0 check yes
velocity all create 1500 4928459 mom yes rot yes dist gaussian
fix 1 all nve
timestep 0.001
thermo 50
fix p all print 10 "$(step) $(pe:%.17g) $(etotal:%.17g) $(press:%.17g)" file {workdir}/{tag}energy.txt screen no
run {steps}
write_dump all custom {workdir}/{tag}final.txt id x y z fx fy fz modify sort id format float %.17g
"""


@pytest.mark.parametrize("nprocs", [1, 2])
def test_md_on_the_lean_step_equals_the_host_step(tmp_path, nprocs):
    model = write_toy_model(tmp_path / "toy.pt")
    series, final, builds = {}, {}, {}
    for step in ("host", "device"):
        out = run_lammps(md_script(model, tmp_path, step), tmp_path, nprocs=nprocs, env={"HIENET_STEP": step})
        assert f"({step} step, HIENET_STEP)" in out
        builds[step] = int(re.search(r"Neighbor list builds = (\d+)", out).group(1))
        assert re.search(r"Dangerous builds = 0", out)
        series[step] = np.loadtxt(tmp_path / f"{step}energy.txt")
        final[step] = np.loadtxt(tmp_path / f"{step}final.txt", skiprows=9)
    assert builds["device"] == builds["host"] >= 5, builds
    # the same trajectory: only the summation order of the force assembly differs
    np.testing.assert_allclose(series["device"][:, 1:3] / 216, series["host"][:, 1:3] / 216, rtol=0, atol=1e-10)
    np.testing.assert_allclose(series["device"][:, 3], series["host"][:, 3], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(final["device"], final["host"], rtol=0, atol=1e-8)


def test_exchange_on_the_lean_step_matches_reference(tmp_path):
    """graph exchange on 2 ranks: energies, forces, global and per-atom virials (stress/atom
    and centroid/stress/atom) against the Python reference of the exported file."""
    model = write_toy_model(tmp_path / "toy.pt")
    system = make_systems()["mixed"]
    script = lammps_script(tmp_path, model, system, pair_style_args="graph exchange")
    run_lammps(script, tmp_path, nprocs=2, env={"HIENET_STEP": "device"})
    result = read_results(tmp_path).in_order_of(system.ids)
    compare(result, expected(model, system, tmp_path), system, atol=1e-10, rtol=1e-10)
