"""pair_style hienet in every LAMMPS unit style but lj: the same physics as in `units metal`.

Each structure is written in the style's lengths (positions, box and vacuum multiplied by
LAMMPS's `force->angstrom`), run with `units <style>`, and the energy, per-atom energies,
forces, virial (from the pressure: P V / nktv2p) and per-atom virials are converted back to
eV and Å with the constants the running LAMMPS reports (`lammps_helpers.unit_constants`),
not with the plugin's code. They must equal the `units metal` run to 1e-10 relative (float64).
The conversion factors themselves are checked against CODATA (ase.units) to 1e-6.
"""
import re

import numpy as np
import pytest
from ase import units as ase_units

from conftest import REPO
from lammps_helpers import (
    UNIT_STYLES,
    LammpsError,
    lammps_script,
    make_systems,
    run_lammps,
    run_system_in_units,
    unit_constants,
)
from toy_model import write_toy_model

SYSTEMS = make_systems()
NAMES = ["triclinic", "mixed", "slab", "molecule"]
RELATIVE = 1e-10

# 1 eV and 1 Å in each style's energy and length units, from CODATA through ASE (independent
# of LAMMPS's rounded constants, hence the 1e-6 tolerance)
_KCAL_PER_MOL = 4184.0 / ase_units._Nav / ase_units._e   # eV
PHYSICAL = {  # style: (1 eV in energy units, 1 Å in length units)
    "metal": (1.0, 1.0),
    "real": (1.0 / _KCAL_PER_MOL, 1.0),
    "si": (ase_units._e, 1e-10),
    "cgs": (ase_units._e * 1e7, 1e-8),
    "electron": (1.0 / ase_units.Hartree, 1.0 / ase_units.Bohr),
    "micro": (ase_units._e / 1e-15, 1e-4),    # picogram µm² / µs² = 1e-15 J
    "nano": (ase_units._e / 1e-21, 1e-1),     # attogram nm² / ns² = 1e-21 J
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("units") / "toy.pt", "float64")


@pytest.fixture(scope="module")
def metal(model, tmp_path_factory):
    out = {}
    for name in NAMES:
        workdir = tmp_path_factory.mktemp(f"metal_{name}")
        out[name] = run_system_in_units(workdir, model, SYSTEMS[name], "metal")
    return out


def assert_same(got, want, what):
    scale = np.abs(want).max(initial=0.0)
    assert scale > 0, f"{what}: reference is zero, the comparison would be empty"
    err = np.abs(np.asarray(got) - np.asarray(want)).max(initial=0.0)
    assert err <= RELATIVE * scale, f"{what}: off by {err:.3e} (relative {err / scale:.2e})"


def test_plugin_metal_boltz_is_lammps_metal_boltz():
    header = (REPO / "lammps_plugin" / "hienet_units.h").read_text()
    value = float(re.search(r"BOLTZ_METAL = ([0-9.eE+-]+);", header).group(1))
    assert value == unit_constants("metal").boltz


@pytest.mark.parametrize("style", UNIT_STYLES)
def test_conversion_factors_are_physical(style):
    c = unit_constants(style)
    energy, length = PHYSICAL[style]
    assert c.energy == pytest.approx(energy, rel=1e-6)
    assert c.length == pytest.approx(length, rel=1e-6)


@pytest.mark.parametrize("style", [s for s in UNIT_STYLES if s != "metal"])
def test_unit_style_gives_metal_physics(style, model, metal, tmp_path):
    for name in NAMES:
        (tmp_path / name).mkdir()
        got = run_system_in_units(tmp_path / name, model, SYSTEMS[name], style)
        want = metal[name]
        where = f"units {style}, {name}"
        assert_same(got.energy, want.energy, f"{where}: energy")
        assert_same(got.energies, want.energies, f"{where}: per-atom energies")
        assert_same(got.forces, want.forces, f"{where}: forces")
        assert_same(got.virial, want.virial, f"{where}: virial (from the pressure)")
        assert_same(got.atom_virial, want.atom_virial, f"{where}: per-atom virial")
        assert_same(got.centroid_virial, want.centroid_virial, f"{where}: centroid virial")
        assert got.volume == pytest.approx(want.volume, rel=1e-12)


@pytest.mark.parametrize("style", ["real", "si"])
def test_unit_style_under_mpi_ghost_graph(style, model, metal, tmp_path):
    """Two ranks (graph ghost): the ghost cutoff layers x cutoff must be in the style's lengths."""
    got = run_system_in_units(tmp_path, model, SYSTEMS["mixed"], style, nprocs=2)
    want = metal["mixed"]
    assert_same(got.energy, want.energy, f"units {style}, 2 ranks: energy")
    assert_same(got.forces, want.forces, f"units {style}, 2 ranks: forces")
    assert_same(got.virial, want.virial, f"units {style}, 2 ranks: virial")


def test_default_skin_of_si_units_is_refused(model, tmp_path):
    """units si defaults to a 1 mm skin: LAMMPS would build a ghost shell of ~1e20 atoms."""
    c = unit_constants("si")
    from lammps_helpers import scaled_system

    script = lammps_script(tmp_path, model, scaled_system(SYSTEMS["mixed"], c.length), units="si",
                           margin=3.0 * c.length)
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path)
    assert "neighbor skin 0.001 is" in str(err.value)
    assert "set a skin of about 2 A, e.g. 'neighbor 2e-10 bin'" in str(err.value)


def test_si_demo_model_in_real_units(tmp_path):
    """A real HIENet network (the bundled si-demo, float64) in units real vs metal."""
    from hienet.pretrained import bundled_model_path

    model = bundled_model_path("si-demo", exported=True)
    system = SYSTEMS["si_diamond"]
    (tmp_path / "metal").mkdir()
    want = run_system_in_units(tmp_path / "metal", model, system, "metal")
    got = run_system_in_units(tmp_path, model, system, "real")
    assert_same(got.energy, want.energy, "si-demo, units real: energy")
    assert_same(got.forces, want.forces, "si-demo, units real: forces")
    assert_same(got.virial, want.virial, "si-demo, units real: virial")
