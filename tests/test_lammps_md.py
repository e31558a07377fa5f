"""Molecular dynamics through pair_style hienet: NVE energy conservation, NPT and NVT runs,
in serial and on two MPI ranks (graph exchange).

NVE bound. Velocity Verlet conserves a shadow Hamiltonian that differs from the true
energy by O(dt^2): for a smooth potential the total energy fluctuates but does not drift.
216 Si atoms at 1000 K, dt = 1 fs, 1000 steps with the smooth toy model (C1 cutoff
envelope) in a diamond lattice of 6.25 Å (its energy is flat there; the second shell at
4.42 Å lies just beyond the 4 Å cutoff, so pairs cross it all the time) fluctuate by
about 2.4e-6 eV/atom (measured: max deviation 2.35e-6 on 1 rank, 2.41e-6 on 2). We require
|E(t) - E(0)| <= 1e-5 eV/atom over the run: four times the measured fluctuation, and
still 1e-4 of the kinetic energy per atom (0.11 eV). A force that is not exactly -dE/dx
(a wrong ghost force, a missing exchange, a dropped edge, a float32 energy sum) breaks it
at once. The non-smooth variant (messages step down by 5 % instead of vanishing when a
pair crosses the cutoff) is run for comparison and exceeds the bound (measured: max
deviation 4.5e-3 eV/atom).
"""
import numpy as np
import pytest

from lammps_helpers import make_systems, nktv2p_metal, nve_run, reference, rotate_reference, run_lammps, write_data
from lammps_helpers import lammps_script, read_results
from toy_model import write_toy_model

NVE_BOUND = 1e-5    # eV/atom, see the module docstring
TOY_LATTICE = 6.25  # Å, see the module docstring


@pytest.mark.parametrize("nprocs", [1, 2])
def test_nve_energy_conservation(tmp_path, nprocs):
    model = write_toy_model(tmp_path / "smooth.pt", smooth=True)
    etotal, ke = nve_run(model, tmp_path, nprocs=nprocs, lattice=TOY_LATTICE)
    deviation = np.abs(etotal - etotal[0]).max()
    print(f"smooth toy, 216 Si, 1000 K, 1 fs, 1000 steps, {nprocs} rank(s): max |E - E0| = "
          f"{deviation:.2e} eV/atom, end - start = {etotal[-1] - etotal[0]:.2e} eV/atom")
    assert ke.mean() > 0.05                       # it is hot: atoms move and cross the cutoff
    assert deviation <= NVE_BOUND


def test_nve_non_smooth_variant_drifts(tmp_path):
    """Recorded for comparison: without the cutoff envelope the bound is violated."""
    model = write_toy_model(tmp_path / "rough.pt", smooth=False)
    etotal, _ = nve_run(model, tmp_path, lattice=TOY_LATTICE)
    deviation = np.abs(etotal - etotal[0]).max()
    print(f"non-smooth toy: max |E - E0| = {deviation:.2e} eV/atom, "
          f"end - start = {etotal[-1] - etotal[0]:.2e} eV/atom")
    assert deviation > 10 * NVE_BOUND


NPT_COLUMNS = ["step", "pe", "ke"] + [f"c_vir[{k}]" for k in range(1, 7)] + \
    ["pxx", "pyy", "pzz", "pxy", "pxz", "pyz", "vol"]


@pytest.fixture(scope="module")
def npt_runs(tmp_path_factory):
    """50 NPT steps of the triclinic test structure (30 atoms, read_data, so that atom IDs
    and velocities do not depend on the rank count) on 1 and 2 ranks; thermo every step."""
    workdir = tmp_path_factory.mktemp("npt")
    model = write_toy_model(workdir / "toy.pt")
    system = make_systems()["triclinic"]
    columns = " ".join(f"$({c}:%.17g)" for c in NPT_COLUMNS)
    runs = {}
    for nprocs in (1, 2):
        folder = workdir / f"np{nprocs}"
        folder.mkdir()
        run = (f"thermo_style custom step temp pe ke press vol\n"
               f"velocity all create 300 12345 mom yes rot yes loop geom\n"
               f"fix 1 all npt temp 300 300 0.1 tri 0 0 1.0\n"
               f"timestep 0.0005\n"
               f"fix p all print 1 \"{columns}\" file {folder}/npt.txt screen no\n"
               f"run 50")
        run_lammps(lammps_script(folder, model, system, run=run), folder, nprocs=nprocs)
        runs[nprocs] = np.loadtxt(folder / "npt.txt", comments="#")
    return model, system, runs, workdir


@pytest.mark.parametrize("nprocs", [1, 2])
def test_npt_runs_and_first_pressure_equals_reference_stress(npt_runs, nprocs):
    model, system, runs, workdir = npt_runs
    data = runs[nprocs]
    assert data[-1, 0] == 50
    first = data[0, 3:9]                           # virial pressure, bar, LAMMPS frame
    R = write_data(workdir / "frame.data", system)
    ref = rotate_reference(reference(model, system.atoms), R)
    sigma = ref["stress_tensor"]                   # eV/Å^3, ASE sign
    expected = -np.array([sigma[0, 0], sigma[1, 1], sigma[2, 2], sigma[0, 1], sigma[0, 2], sigma[1, 2]])
    expected *= nktv2p_metal()
    np.testing.assert_allclose(first, expected, rtol=0, atol=1e-8 * nktv2p_metal())
    assert abs(data[-1, -1] - data[0, -1]) > 1e-6  # the barostat moved the box
    assert np.all(np.isfinite(data))


def test_npt_on_two_ranks_follows_one_rank(npt_runs):
    """Issue 8: thermo on 2 ranks (graph exchange) equals 1 rank to 1e-8 relative, every
    one of the first 50 steps (energy, kinetic energy, pressure tensor, volume)."""
    _, _, runs, _ = npt_runs
    one, two = runs[1], runs[2]
    assert one.shape == two.shape == (51, len(NPT_COLUMNS))
    scale = np.abs(one).max(axis=0)
    worst = (np.abs(two - one) / scale).max(axis=0)
    print("log10 max relative difference:", dict(zip(NPT_COLUMNS, np.round(np.log10(worst + 1e-300), 1))))
    assert np.all(worst <= 1e-8), dict(zip(NPT_COLUMNS, worst))


def test_nvt_1500K_on_two_ranks_with_migrating_atoms(tmp_path):
    """Issue 8: 500 NVT steps at 1500 K on 2 ranks (graph exchange). Atoms change ranks on
    the way (counted from the owning rank, dumped every 50 steps); the forces, per-atom
    energies and virial of the final state equal a serial evaluation of the same state."""
    model = write_toy_model(tmp_path / "toy.pt")
    workdir = tmp_path / "nvt"
    workdir.mkdir()
    script = f"""
units metal
atom_style atomic
lattice diamond {TOY_LATTICE}
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 28.0855
pair_style hienet {model}
pair_coeff * * Si
compute owner all property/atom proc
compute pe all pe/atom
velocity all create 1500 4928459 mom yes rot yes dist gaussian
fix 1 all nvt temp 1500 1500 0.05
timestep 0.001
thermo 100
dump o all custom 50 {workdir}/owners.txt id c_owner
dump_modify o sort id
dump f all custom 500 {workdir}/final.txt id fx fy fz c_pe
dump_modify f sort id format float %.17g
run 500
print "$(pe:%.17g) $(temp:%.17g)" file {workdir}/final_pe.txt screen no
write_data {workdir}/final.data
"""
    output = run_lammps(script, workdir, nprocs=2)
    assert "pair_style hienet: graph exchange" in output
    frames = [block for block in (workdir / "owners.txt").read_text().split("ITEM: TIMESTEP")[1:]]
    owners = np.array([np.loadtxt(block.splitlines()[9:], dtype=int)[:, 1] for block in frames])
    assert owners.shape == (11, 216)
    moved = int((owners != owners[0]).any(axis=0).sum())
    print(f"{moved} of 216 atoms changed rank during 500 steps at 1500 K")
    assert moved >= 10

    pe, temp = np.loadtxt(workdir / "final_pe.txt")
    assert 1000 < temp < 2000
    final = np.loadtxt((workdir / "final.txt").read_text().split("ITEM: TIMESTEP")[-1].splitlines()[9:])
    serial_dir = tmp_path / "serial"
    serial_dir.mkdir()
    run_lammps(f"""
units metal
atom_style atomic
read_data {workdir}/final.data
pair_style hienet {model}
pair_coeff * * Si
compute pe all pe/atom
dump f all custom 1 {serial_dir}/final.txt id fx fy fz c_pe
dump_modify f sort id format float %.17g
run 0
print "$(pe:%.17g)" file {serial_dir}/pe.txt screen no
""", serial_dir)
    serial = np.loadtxt((serial_dir / "final.txt").read_text().splitlines()[9:])
    np.testing.assert_array_equal(final[:, 0], serial[:, 0])
    assert abs(pe - float(np.loadtxt(serial_dir / "pe.txt"))) <= 1e-10 * abs(pe)
    for column, what in ((slice(1, 4), "forces"), (slice(4, 5), "per-atom energy")):
        err = np.abs(final[:, column] - serial[:, column]).max()
        assert err <= 1e-10 * np.abs(serial[:, column]).max(), f"{what}: {err:.2e}"
