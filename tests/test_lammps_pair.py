"""pair_style hienet against the Python reference, in serial and under MPI (issue 4).

The reference (tests/lammps_helpers.py::reference) evaluates the same exported file in
Python on a vesin neighbour list, so it shares neither the graph construction nor the
force/virial assembly with the C++ side. LAMMPS runs get permuted types, two types mapped
to one element and shuffled, non-consecutive atom IDs.
"""
import numpy as np
import pytest

from lammps_helpers import (
    lammps_script,
    make_systems,
    read_results,
    reference,
    rotate_reference,
    run_lammps,
    run_system,
    write_data,
)
from toy_model import write_toy_model

SYSTEMS = make_systems()
NAMES = list(SYSTEMS)
TOL64 = 1e-8      # issue 4: eV/atom, eV/Å, eV/Å^3
TOL32 = 1e-4      # relative
ROUNDOFF = 1e-10  # MPI / graph mode vs serial, float64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {dtype: write_toy_model(d / f"toy_{dtype}.pt", dtype) for dtype in ("float64", "float32")}


def expected(model, system, workdir):
    R = write_data(workdir / "frame.data", system)     # the rotation LAMMPS applies
    return rotate_reference(reference(model, system.atoms), R)


def compare(lmp, ref, system, atol, rtol=0.0):
    """Energy per atom, per-atom energy, forces, virial / volume, per-atom virials."""
    n = len(system.atoms)
    volume = lmp.volume

    def check(what, got, want):
        """max |got - want| <= atol + rtol * max |want|"""
        got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
        bound = atol + rtol * np.abs(want).max(initial=0.0)
        err = np.abs(got - want).max(initial=0.0)
        assert err <= bound, f"{system.name}: {what} off by {err:.3e} (bound {bound:.1e})"

    check("energy per atom", lmp.energy / n, ref["energy"] / n)
    check("per-atom energy", lmp.energies, ref["energies"])
    check("forces", lmp.forces, ref["forces"])
    # stress-like: virial / volume (eV/Å^3); LAMMPS's box volume also for non-periodic boxes
    check("virial / volume", lmp.virial / volume, ref["virial"] / volume)
    check("per-atom virial", lmp.atom_virial, ref["atom_virial"])
    check("per-atom centroid virial", lmp.centroid_virial, ref["centroid_virial"])
    if "stress_tensor" in ref:
        W = np.zeros((3, 3))
        for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
            W[a, b] = W[b, a] = lmp.virial[k]
        check("stress (eV/Å^3)", -W / volume, 0.5 * (ref["stress_tensor"] + ref["stress_tensor"].T))


def test_systems_are_nontrivial(models):
    """Guards the fixtures: types permuted, IDs sparse, forces and virials not vanishing."""
    si = SYSTEMS["si_diamond"]
    assert set(si.types) == {1, 2}
    assert SYSTEMS["rocksalt"].type_elements == ["Cl", "Na"]
    for system in SYSTEMS.values():
        assert len(set(system.ids)) == len(system.ids)
        if len(system.ids) > 2:
            assert np.all(np.diff(np.sort(system.ids)) > 1)          # non-consecutive
            assert np.any(np.diff(system.ids) < 0)                   # not in storage order
    ref = reference(models["float64"], SYSTEMS["mixed"].atoms)
    assert np.abs(ref["forces"]).max() > 0.1
    assert np.abs(ref["virial"]).max() > 0.1
    short = SYSTEMS["short_cell"].atoms
    assert max(short.cell.lengths()) < 4.0 and reference(models["float64"], short)["num_edges"] > 20


@pytest.mark.parametrize("name", NAMES)
def test_serial_float64_matches_reference(models, name, tmp_path):
    system = SYSTEMS[name]
    lmp = run_system(tmp_path, models["float64"], system)
    compare(lmp, expected(models["float64"], system, tmp_path), system, TOL64)


@pytest.mark.parametrize("name", ["si_diamond", "triclinic", "slab", "mixed"])
def test_serial_float32_matches_reference(models, name, tmp_path):
    system = SYSTEMS[name]
    lmp = run_system(tmp_path, models["float32"], system)
    ref = expected(models["float32"], system, tmp_path)
    compare(lmp, ref, system, 0.0, rtol=TOL32)
    # and float32 is really float32: it differs from the float64 model's numbers
    ref64 = expected(models["float64"], system, tmp_path)
    assert abs(ref["energy"] - ref64["energy"]) > 1e-9


@pytest.mark.parametrize("mode", ["ghost", "exchange"])
@pytest.mark.parametrize("name", NAMES)
def test_ghost_graphs_on_one_rank_match_local_graph(models, name, mode, tmp_path):
    """graph ghost (layers x cutoff shell) and graph exchange (periodic images exchanged by
    LAMMPS's forward/reverse communication with itself) == graph local, 1 rank."""
    system = SYSTEMS[name]
    local = run_system(tmp_path, models["float64"], system, pair_style_args="graph local", tag="l")
    ghost = run_system(tmp_path, models["float64"], system, pair_style_args=f"graph {mode}", tag="g")
    for field in ("energies", "forces", "atom_virial", "centroid_virial", "virial"):
        np.testing.assert_allclose(getattr(ghost, field), getattr(local, field), rtol=0, atol=ROUNDOFF,
                                   err_msg=f"{name}: {field}")


# (several MPI ranks on several processor grids: tests/test_lammps_parallel.py)


# ---- accumulation, migration, empty ranks ------------------------------------------------
@pytest.mark.parametrize("nprocs", [1, 2])
def test_hybrid_overlay_accumulates(models, tmp_path, nprocs):
    """hybrid/overlay of hienet with hienet, and with lj/cut: energies, forces and virials
    add up (the pair style accumulates instead of overwriting)."""
    system = SYSTEMS["mixed"]
    model = models["float64"]
    elements = " ".join(system.type_elements)
    fields = ("energies", "forces", "atom_virial", "centroid_virial", "virial")
    single = run_system(tmp_path, model, system, nprocs=nprocs, tag="one")
    pair = (f"pair_style hybrid/overlay hienet {model} hienet {model}\n"
            f"pair_coeff * * hienet 1 {elements}\npair_coeff * * hienet 2 {elements}")
    double = run_system(tmp_path, model, system, nprocs=nprocs, pair=pair, tag="two")
    assert double.energy == pytest.approx(2 * single.energy, rel=1e-12)
    for field in fields:
        np.testing.assert_allclose(getattr(double, field), 2 * getattr(single, field), rtol=0, atol=1e-12)
    lj = run_system(tmp_path, model, system, nprocs=nprocs, tag="lj",
                    pair="pair_style lj/cut 3.0\npair_coeff * * 0.01 2.0")
    both = run_system(tmp_path, model, system, nprocs=nprocs, tag="both",
                      pair=f"pair_style hybrid/overlay hienet {model} lj/cut 3.0\n"
                           f"pair_coeff * * hienet {elements}\npair_coeff * * lj/cut 0.01 2.0")
    assert abs(lj.energy) > 1e-3
    assert both.energy == pytest.approx(single.energy + lj.energy, abs=1e-10)
    for field in fields:
        np.testing.assert_allclose(getattr(both, field), getattr(single, field) + getattr(lj, field),
                                   rtol=0, atol=1e-10, err_msg=field)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_atoms_migrating_between_ranks(models, tmp_path, nprocs):
    """Shift every atom by half a box (they change rank and cross the periodic boundary)
    and rerun: energy and forces are those of the unshifted system."""
    system = SYSTEMS["si_diamond"]
    extra = "run 0\ndisplace_atoms all move 5.3 2.9 -4.1 units box\n"
    shifted = run_system(tmp_path, models["float64"], system, nprocs=nprocs, extra=extra, tag="s")
    ref = expected(models["float64"], system, tmp_path)
    compare(shifted, ref, system, TOL64)


def test_empty_ranks(models, tmp_path):
    """A molecule in the middle of a wide non-periodic box, split in 3 slabs along x:
    two ranks own no atom (and see no ghost)."""
    system = SYSTEMS["molecule"]
    script = lammps_script(tmp_path, models["float64"], system, header="processors 3 1 1", margin=40.0)
    script += 'variable owned equal count(all)\nprint "box x $(xlo) $(xhi)"\n'
    output = run_lammps(script, tmp_path, nprocs=3)
    result = read_results(tmp_path).in_order_of(system.ids)
    compare(result, expected(models["float64"], system, tmp_path), system, TOL64)
    assert "3 by 1 by 1 MPI processor grid" in output
    xlo, xhi = map(float, output.split("box x ")[1].split()[:2])
    x = result.positions[:, 0]
    third = (xhi - xlo) / 3
    assert x.min() > xlo + third and x.max() < xhi - third, "the molecule must sit in the middle third"


@pytest.mark.parametrize("nprocs", [1, 2])
def test_null_type_under_hybrid(models, tmp_path, nprocs):
    """pair_style hybrid: hienet handles Na-Na (Cl is NULL), lj/cut the pairs with Cl. The
    hienet part equals the model on the Na sublattice alone."""
    system = SYSTEMS["rocksalt"]                                   # type 1 = Cl, type 2 = Na
    model = models["float64"]
    pair = f"pair_style hybrid hienet {model} lj/cut 3.0\npair_coeff * * hienet NULL Na\npair_coeff 1 * lj/cut 0.01 2.0"
    mixed = run_system(tmp_path, model, system, nprocs=nprocs, tag="mixed", pair=pair)
    lj = run_system(tmp_path, model, system, nprocs=nprocs, tag="lj",
                    pair="pair_style lj/cut 3.0\npair_coeff 1 * 0.01 2.0\npair_coeff 2 2 0.0 2.0")
    is_na = np.array([s == "Na" for s in system.atoms.get_chemical_symbols()])
    ref = expected(model, system_subset(system, is_na), tmp_path)
    forces = lj.forces.copy()
    forces[is_na] += ref["forces"]
    assert mixed.energy == pytest.approx(lj.energy + ref["energy"], abs=1e-10)
    np.testing.assert_allclose(mixed.forces, forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(mixed.virial, lj.virial + ref["virial"], rtol=0, atol=1e-10)


def system_subset(system, mask):
    from lammps_helpers import System

    return System(system.name + "_subset", system.atoms[mask], system.ids[mask], system.types[mask],
                  system.type_elements, system.boundary)
