"""pair_style hienet input errors: each a LAMMPS error with a clear message, never a crash."""
import re

import numpy as np
import pytest

from lammps_helpers import LammpsError, lammps_script, make_systems, read_results, run_lammps
from toy_model import write_toy_model

SYSTEM = make_systems()["rocksalt"]          # types: 1 = Cl, 2 = Na
SPECIES = "H C O Na Si Cl"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("model") / "toy.pt")


def lammps_error(tmp_path, nprocs=1, **kwargs) -> str:
    model = kwargs.pop("model")
    script = lammps_script(tmp_path, model, SYSTEM, **kwargs)
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path, nprocs=nprocs)
    return str(err.value)


def test_valid_input_runs(model, tmp_path):
    """The baseline of the error cases below runs, and again after errors in this process."""
    run_lammps(lammps_script(tmp_path, model, SYSTEM), tmp_path)
    assert np.isfinite(read_results(tmp_path).energy)


def test_missing_model_file(tmp_path):
    missing = tmp_path / "missing.pt"
    message = lammps_error(tmp_path, model=missing)
    assert f"cannot open HIENet model file '{missing}': No such file or directory" in message


def test_unknown_element(model, tmp_path):
    message = lammps_error(tmp_path, model=model, elements="Cl Xx")
    assert (f"Element 'Xx' (atom type 2) is not in HIENet model {model}; the model's species "
            f"are: {SPECIES}") in message


def test_wrong_number_of_elements(model, tmp_path):
    message = lammps_error(tmp_path, model=model, elements="Cl")
    assert "needs one element per atom type: 2 atom types but 1 elements given (Cl)" in message
    message = lammps_error(tmp_path, model=model, elements="Cl Na Si")
    assert "2 atom types but 3 elements given (Cl Na Si)" in message


def test_pair_coeff_must_cover_all_types(model, tmp_path):
    message = lammps_error(tmp_path, model=model, pair=f"pair_style hienet {model}\npair_coeff 1 2 Cl Na")
    assert "Pair_coeff must start with * * for pair style hienet" in message   # one_coeff = 1


def test_unsupported_units(model, tmp_path):
    # the other unit styles are converted (tests/test_lammps_units.py); lj has no eV or Å
    script = lammps_script(tmp_path, model, SYSTEM).replace("units metal", "units lj")
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path)
    assert "Pair style hienet cannot run with 'units lj'" in str(err.value)
    assert "use units metal (or real, si, cgs, electron, micro, nano" in str(err.value)


def test_unknown_format_version(tmp_path):
    future = write_toy_model(tmp_path / "future.pt", format_version=7)
    message = lammps_error(tmp_path, model=future)
    assert (f"unsupported HIENet model format version 7 in {future} (this build reads 2); "
            "re-export with hienet-export") in message


def test_corrupt_model_file(model, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model.read_bytes()[:1000])
    message = lammps_error(tmp_path, model=corrupt)
    assert f"cannot read HIENet model file '{corrupt}': not a TorchScript archive or corrupt" in message


def test_unknown_keyword(model, tmp_path):
    message = lammps_error(tmp_path, model=model, pair_style_args="device gpu")
    assert "Unknown pair_style hienet device 'gpu': use auto, cpu or cuda" in message
    message = lammps_error(tmp_path, model=model, pair_style_args="precision double")
    assert "Unknown pair_style hienet keyword 'precision' (known: device, graph, deviation)" in message


def test_newton_pair_off_on_several_ranks(model, tmp_path):
    message = lammps_error(tmp_path, nprocs=2, model=model, newton="off")
    assert ("Pair style hienet with graph exchange (the default on several MPI ranks) requires "
            "'newton pair on'") in message
    message = lammps_error(tmp_path, nprocs=2, model=model, newton="off", pair_style_args="graph ghost")
    assert "Pair style hienet with graph ghost (the default on several MPI ranks) requires" in message
    assert re.search(r"exit code 1\b", message), "a clean LAMMPS error exit, not a crash"


def test_newton_pair_off_is_fine_on_one_rank(model, tmp_path):
    run_lammps(lammps_script(tmp_path, model, SYSTEM, newton="off"), tmp_path)
    off = read_results(tmp_path)
    run_lammps(lammps_script(tmp_path, model, SYSTEM, tag="on"), tmp_path)
    on = read_results(tmp_path, "on")
    np.testing.assert_allclose(off.forces, on.forces, rtol=0, atol=1e-12)


def test_local_graph_on_several_ranks(model, tmp_path):
    message = lammps_error(tmp_path, nprocs=2, model=model, pair_style_args="graph local")
    assert "pair_style hienet graph local works on one MPI rank only (2 ranks here)" in message


def test_missing_model_file_on_several_ranks(tmp_path):
    missing = tmp_path / "missing.pt"
    message = lammps_error(tmp_path, nprocs=2, model=missing)
    assert f"cannot open HIENet model file '{missing}'" in message
    assert re.search(r"exit code 1\b", message)


def test_comm_mode_multi_on_several_ranks(model, tmp_path):
    message = lammps_error(tmp_path, nprocs=2, model=model, header="neighbor 2.0 multi\ncomm_modify mode multi",
                           pair_style_args="graph ghost")
    assert "with graph ghost needs 'comm_modify mode single' (it sets the ghost cutoff itself)" in message


def test_format_version_1_file_is_refused_on_several_ranks(tmp_path):
    old = write_toy_model(tmp_path / "v1.pt", format_version=1)
    message = lammps_error(tmp_path, nprocs=2, model=old)
    assert (f"unsupported HIENet model format version 1 in {old} (this build reads 2); "
            "re-export with hienet-export") in message


def test_unknown_graph_mode(model, tmp_path):
    message = lammps_error(tmp_path, model=model, pair_style_args="graph halo")
    assert "Unknown pair_style hienet graph 'halo': use auto, local, exchange or ghost" in message
