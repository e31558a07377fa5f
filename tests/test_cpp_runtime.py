"""The C++ runtime (hienet._runtime, the evaluator behind pair_style hienet) on its own.

Checked against the Python evaluation of the same file (tests/lammps_helpers.py::reference
and hienet.deploy), against finite differences of its own energy (an independent check of
the force and virial signs of export/FORMAT.md), and for its error messages.
"""
import zipfile

import numpy as np
import pytest
import torch

from lammps_helpers import make_systems, neighbor_graph, reference, runtime
from toy_model import TOY_CUTOFF, TOY_LAYERS, TOY_SPECIES, write_toy_model

SYSTEMS = make_systems()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {dtype: write_toy_model(d / f"toy_{dtype}.pt", dtype) for dtype in ("float64", "float32")}


@pytest.fixture(scope="module")
def rt():
    return runtime()


def graph_of(atoms, species_list, cutoff=TOY_CUTOFF):
    i, j, D = neighbor_graph(atoms, cutoff)
    species = np.array([species_list.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
    return species, np.stack([i, j]), D


def run(model, atoms, atom_virial=9):
    species, edge_index, edge_vec = graph_of(atoms, model.species, model.cutoff)
    return model.evaluate(species, edge_index, edge_vec, len(atoms), atom_virial)


def test_metadata(rt, models):
    model = rt.Model(str(models["float64"]))
    assert model.cutoff == TOY_CUTOFF
    assert model.species == TOY_SPECIES
    assert model.num_message_passing_layers == TOY_LAYERS
    assert model.dtype == "float64"
    assert model.device == "cpu"
    assert model.metadata["format_version"] == rt.FORMAT_VERSION == 2
    assert model.metadata["units"] == {"energy": "eV", "length": "Å"}      # \u escapes decoded
    assert rt.Model(str(models["float32"])).dtype == "float32"
    assert rt.read_metadata(str(models["float64"]))["model_hash"].startswith("sha256:")
    assert rt.torch_version() == torch.__version__.split("+")[0]
    assert "species=[H, C, O, Na, Si, Cl]" in repr(model)


@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_runtime_matches_python(rt, models, name, dtype):
    atoms = SYSTEMS[name].atoms
    out = run(rt.Model(str(models[dtype])), atoms)
    ref = reference(models[dtype], atoms)
    if dtype == "float64":
        tol = dict(rtol=0, atol=1e-12)
    else:
        scale = max(np.abs(ref["forces"]).max(), 1.0)
        tol = dict(rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(out["energy"], ref["energy"], **tol)
    np.testing.assert_allclose(out["atom_energy"], ref["energies"], **tol)
    np.testing.assert_allclose(out["forces"], ref["forces"], **tol)
    np.testing.assert_allclose(out["virial"], ref["virial"], **tol)
    np.testing.assert_allclose(out["atom_virial"], ref["centroid_virial"], **tol)
    # the per-atom virial sums to the global one (half of each edge to each end)
    np.testing.assert_allclose(out["atom_virial"][:, :6].sum(0), out["virial"], rtol=0, atol=1e-10)


def test_runtime_matches_hienet_deploy(rt, models):
    """Against the project's Python loader of exported files (hienet.deploy)."""
    from hienet.deploy import DeployedModel

    deployed = DeployedModel(models["float64"])
    model = rt.Model(str(models["float64"]))
    for name in ("mixed", "triclinic", "short_cell"):
        atoms = SYSTEMS[name].atoms
        out, ref = run(model, atoms), deployed.evaluate(atoms)
        np.testing.assert_allclose(out["energy"], ref["energy"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["atom_energy"], ref["energies"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=1e-12)
        W = out["virial"]
        stress = -np.array([W[0], W[1], W[2], W[5], W[4], W[3]]) / atoms.get_volume()  # ASE Voigt
        np.testing.assert_allclose(stress, ref["stress"], rtol=0, atol=1e-12)


def energy_of(model, atoms):
    return run(model, atoms, atom_virial=0)["energy"]


def test_forces_and_virial_are_energy_derivatives(rt, models):
    """F = -dE/dx and W = -dE/d(strain) by central differences: independent of FORMAT.md's
    sign conventions, which the reference shares with the runtime."""
    model = rt.Model(str(models["float64"]))
    atoms = SYSTEMS["triclinic"].atoms.copy()
    out = run(model, atoms)
    h = 1e-5
    for k in (0, 7, 19):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[k, a] += h
            minus.positions[k, a] -= h
            fd = -(energy_of(model, plus) - energy_of(model, minus)) / (2 * h)
            assert abs(fd - out["forces"][k, a]) < 1e-7, (k, a, fd, out["forces"][k, a])
    W = np.zeros((3, 3))
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
        W[a, b] = W[b, a] = out["virial"][k]
    for a, b in [(0, 0), (1, 2), (0, 1), (2, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            energies.append(energy_of(model, strained))
        dE = (energies[0] - energies[1]) / (2 * h)        # = dE/d eps_ab + dE/d eps_ba
        expected = -W[a, b] * (1 if a == b else 2)
        assert abs(dE - expected) < 1e-6, (a, b, dE, expected)


def test_receptive_field_spans_layers(rt, models):
    """The toy is a message-passing model: an atom's energy feels an atom two hops away,
    beyond the cutoff (this is what makes the ghost shell of the pair style necessary)."""
    from ase import Atoms

    model = rt.Model(str(models["float64"]))
    chain = Atoms("Si3", positions=[[0, 0, 0], [3.0, 0, 0], [6.0, 0, 0]], pbc=False)
    moved = chain.copy()
    moved.positions[2, 1] += 0.3
    e0 = run(model, chain)["atom_energy"][0]
    e1 = run(model, moved)["atom_energy"][0]
    assert np.linalg.norm(chain.positions[2] - chain.positions[0]) > TOY_CUTOFF
    assert abs(e1 - e0) > 1e-6


def test_ghost_nodes_do_not_count(rt, models):
    """Nodes >= n_local carry features only: energy and atom_energy cover local nodes."""
    model = rt.Model(str(models["float64"]))
    species, edge_index, edge_vec = graph_of(SYSTEMS["molecule"].atoms, model.species)
    full = model.evaluate(species, edge_index, edge_vec, len(species))
    part = model.evaluate(species, edge_index, edge_vec, 5)
    assert part["atom_energy"].shape == (5,)
    np.testing.assert_allclose(part["atom_energy"], full["atom_energy"][:5], rtol=0, atol=1e-12)
    assert part["energy"] == pytest.approx(full["atom_energy"][:5].sum(), abs=1e-12)
    assert part["forces"].shape == (len(species), 3)
    np.testing.assert_allclose(part["forces"].sum(0), 0.0, atol=1e-12)   # translation invariance


def test_empty_and_edgeless_graphs(rt, models):
    model = rt.Model(str(models["float64"]))
    empty = model.evaluate(np.zeros(0, np.int64), np.zeros((2, 0), np.int64), np.zeros((0, 3)), 0, 9)
    assert empty["energy"] == 0.0 and empty["forces"].shape == (0, 3) and empty["atom_virial"].shape == (0, 9)
    single = model.evaluate(np.array([4]), np.zeros((2, 0), np.int64), np.zeros((0, 3)), 1, 6)
    ref = reference(models["float64"], SYSTEMS["isolated_atom"].atoms)
    assert single["energy"] == pytest.approx(ref["energy"], abs=1e-14)
    assert np.all(single["forces"] == 0) and np.all(single["virial"] == 0)


def test_threads_from_environment(rt, models, monkeypatch):
    monkeypatch.setenv("HIENET_NUM_THREADS", "2")
    assert rt.Model(str(models["float64"])).num_threads == 2
    assert rt.Model(str(models["float64"]), num_threads=1).num_threads == 1
    monkeypatch.setenv("HIENET_NUM_THREADS", "many")
    with pytest.raises(rt.ModelError, match="HIENET_NUM_THREADS must be a positive integer, got 'many'"):
        rt.Model(str(models["float64"]))
    monkeypatch.delenv("HIENET_NUM_THREADS")
    assert rt.Model(str(models["float64"])).num_threads == 1                # the default


# ---- errors ----------------------------------------------------------------------------
def test_missing_file(rt, tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(rt.ModelError, match=f"cannot open HIENet model file '{path}'"):
        rt.Model(str(path))


def test_corrupt_file(rt, models, tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(models["float64"].read_bytes()[:2000])
    with pytest.raises(rt.ModelError, match="not a TorchScript archive or corrupt"):
        rt.Model(str(path))


def test_unknown_format_version(rt, tmp_path):
    path = write_toy_model(tmp_path / "future.pt", format_version=3)
    message = (f"unsupported HIENet model format version 3 in {path} (this build reads 2); "
               "re-export with hienet-export")
    with pytest.raises(rt.ModelError) as err:
        rt.Model(str(path))
    assert str(err.value) == message


def test_file_without_metadata(rt, tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(rt.ModelError, match="has no metadata.json: it was not written by hienet-export"):
        rt.Model(str(path))


def test_broken_metadata(rt, models, tmp_path):
    path = tmp_path / "broken.pt"
    with zipfile.ZipFile(models["float64"]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("extra/metadata.json"):
                data = data[:-5]
            dst.writestr(item, data)
    with pytest.raises(rt.ModelError, match="corrupt metadata.json"):
        rt.Model(str(path))
    bad_dtype = write_toy_model(tmp_path / "half.pt", metadata_overrides={"dtype": "float16"})
    with pytest.raises(rt.ModelError, match='dtype "float16"; only float32 and float64'):
        rt.Model(str(bad_dtype))
    no_cutoff = write_toy_model(tmp_path / "nocut.pt", metadata_overrides={"cutoff": None})
    with pytest.raises(rt.ModelError, match="no valid 'cutoff' entry"):
        rt.Model(str(no_cutoff))


def test_bad_graphs(rt, models):
    model = rt.Model(str(models["float64"]))
    edge = np.array([[0], [1]])
    vec = np.array([[1.5, 0.0, 0.0]])
    with pytest.raises(rt.ModelError, match="node 1 has species index 6, the model has 6 species"):
        model.evaluate(np.array([0, 6]), edge, vec, 2)
    with pytest.raises(rt.ModelError, match=r"edge 0 = \(0, 5\) is outside nodes 0..1"):
        model.evaluate(np.array([0, 1]), np.array([[0], [5]]), vec, 2)
    with pytest.raises(rt.ModelError, match="n_local=3"):
        model.evaluate(np.array([0, 1]), edge, vec, 3)
    with pytest.raises(ValueError, match="edge_vec must have shape"):
        model.evaluate(np.array([0, 1]), edge, np.zeros((2, 3)), 2)


def test_device_choice(rt, models):
    if torch.cuda.is_available():
        assert rt.Model(str(models["float64"]), device="cuda").device.startswith("cuda")
    else:
        with pytest.raises(rt.ModelError, match="device cuda was requested, but torch .* sees no CUDA device"):
            rt.Model(str(models["float64"]), device="cuda")
        assert rt.Model(str(models["float64"]), device="auto").device == "cpu"
    assert rt.Model(str(models["float64"]), device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda'"):
        rt.Model(str(models["float64"]), device="tpu")


def test_keys_mirror_python():
    """cpp/include/hienet/keys.h mirrors hienet/graph/keys.py; its metadata keys are FORMAT.md's."""
    import re
    from pathlib import Path

    from hienet.graph import keys

    repo = Path(__file__).resolve().parents[1]
    header = (repo / "cpp" / "include" / "hienet" / "keys.h").read_text()
    graph_part, metadata_part = header.split("namespace metadata_keys", 1)
    pattern = re.compile(r'constexpr const char \*(\w+) = "([^"]+)";')
    cpp = dict(pattern.findall(graph_part))
    python = {name: value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}
    assert cpp == python
    format_md = (repo / "export" / "FORMAT.md").read_text()
    for name, value in pattern.findall(metadata_part):
        assert f"`{value}`" in format_md, f"metadata key {value} not in export/FORMAT.md"
