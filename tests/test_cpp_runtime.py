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
    assert model.metadata["exchange_widths"] == [8, 5]
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
    chain = Atoms("Si3", positions=[[0, 0, 0], [2.5, 0, 0], [5.0, 0, 0]], pbc=False)
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


# ---- layer-by-layer evaluation with a feature exchange (graph exchange) ----------------
def image_graph(atoms, species_list, cutoff):
    """The whole periodic system as one 'rank': owners 0..n-1, every periodic image that is
    a neighbour becomes a ghost node; edges are centred on owners only. Returns
    (species, edge_index, edge_vec, owner) with owner[n] the atom that node n images."""
    from vesin import NeighborList

    pbc = [bool(p) for p in atoms.pbc]
    box = np.array(atoms.cell.array, dtype=float) if any(pbc) else np.zeros((3, 3))
    i, j, S, D = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(atoms.positions, dtype=float), box=box, periodic=pbc, quantities="ijSD")
    owner, ghost_of, neighbour = list(range(len(atoms))), {}, []
    for a, shift in zip(j.tolist(), map(tuple, np.asarray(S).tolist())):
        if shift == (0, 0, 0):
            neighbour.append(a)
            continue
        if (a, shift) not in ghost_of:
            ghost_of[(a, shift)] = len(owner)
            owner.append(a)
        neighbour.append(ghost_of[(a, shift)])
    owner = np.array(owner, dtype=np.int64)
    species = np.array([species_list.index(s) for s in atoms.get_chemical_symbols()])[owner]
    return species, np.stack([i, neighbour]).astype(np.int64), np.asarray(D, dtype=float), owner


def exchange_results(model, atoms):
    """evaluate_exchange on the image graph, ghost forces/virials added into their owners."""
    species, edge_index, edge_vec, owner = image_graph(atoms, model.species, model.cutoff)
    n = len(atoms)
    out = model.evaluate_exchange(species, edge_index, edge_vec, n, owner, 9)
    forces, virials = np.zeros((n, 3)), np.zeros((n, 9))
    np.add.at(forces, owner, out["forces"])
    np.add.at(virials, owner, out["atom_virial"])
    return out, forces, virials, len(owner) - n


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exchange_evaluation_matches_python(rt, models, dtype):
    """Stage by stage with ghost images and an exchange == the model's forward() on the
    folded graph (Python reference), on every test structure."""
    model = rt.Model(str(models[dtype]))
    ghosts = 0
    for name, system in SYSTEMS.items():
        out, forces, virials, n_ghosts = exchange_results(model, system.atoms)
        ghosts += n_ghosts
        ref = reference(models[dtype], system.atoms)
        relative = 1e-12 if dtype == "float64" else 1e-5      # of the largest component
        for got, want in ((out["energy"], ref["energy"]), (out["atom_energy"], ref["energies"]),
                          (forces, ref["forces"]), (out["virial"], ref["virial"]),
                          (virials, ref["centroid_virial"])):
            scale = max(np.abs(want).max(initial=0.0), 1.0)
            np.testing.assert_allclose(got, want, rtol=0, atol=relative * scale, err_msg=name)
        assert out["exchanges"] == [("forward", 8), ("forward", 5), ("reverse", 5), ("reverse", 8)]
    assert ghosts > 300


def test_exchange_evaluation_of_an_exported_hienet(rt, tmp_path):
    """The real network (invariant layer summing at edge_index[1], equivariant blocks at
    edge_index[0]) through hienet-export's stage methods, against hienet.deploy."""
    from hienet.deploy import DeployedModel
    from hienet.export.exporter import export_model
    from test_lammps_hienet_model import tiny_model

    path = tmp_path / "tiny.pt"
    meta = export_model(tiny_model(), path)
    model, deployed = rt.Model(str(path)), DeployedModel(path)
    for name in ("mixed", "triclinic", "short_cell", "slab"):
        atoms = SYSTEMS[name].atoms
        out, forces, _, n_ghosts = exchange_results(model, atoms)
        ref = deployed.evaluate(atoms)
        assert n_ghosts > 0
        assert abs(out["energy"] - ref["energy"]) <= 1e-10
        np.testing.assert_allclose(out["atom_energy"], ref["energies"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-12)
    widths = meta["exchange_widths"]
    assert out["exchanges"] == [("forward", w) for w in widths] + [("reverse", w) for w in widths[::-1]]


def test_exchange_without_nodes_still_exchanges(rt, models):
    """A rank with no atoms takes part in every exchange, in the same order."""
    model = rt.Model(str(models["float64"]))
    none = np.zeros(0, np.int64)
    out = model.evaluate_exchange(none, np.zeros((2, 0), np.int64), np.zeros((0, 3)), 0, none, 6)
    assert out["energy"] == 0.0 and out["forces"].shape == (0, 3)
    assert out["exchanges"] == [("forward", 8), ("forward", 5), ("reverse", 5), ("reverse", 8)]


def test_exchange_errors(rt, models, tmp_path):
    model = rt.Model(str(models["float64"]))
    vec = np.array([[1.5, 0.0, 0.0]])
    with pytest.raises(rt.ModelError, match=r"edge 0 = \(1, 0\) is centred on a ghost node \(n_local=1\)"):
        model.evaluate_exchange(np.array([0, 1]), np.array([[1], [0]]), vec, 1, np.array([0, 0]))
    # format version 1 (no exchange_widths, no archive digest): refused, with the advice
    old = write_toy_model(tmp_path / "v1.pt", format_version=1)
    with pytest.raises(rt.ModelError, match=r"unsupported HIENet model format version 1 .*\(this "
                                            r"build reads 2\); re-export with hienet-export"):
        rt.Model(str(old))
    no_widths = write_toy_model(tmp_path / "nowidths.pt", metadata_overrides={"exchange_widths": None})
    with pytest.raises(rt.ModelError, match="no valid 'exchange_widths' entry"):
        rt.Model(str(no_widths))
    wrong = rt.Model(str(write_toy_model(tmp_path / "wrong.pt", metadata_overrides={"exchange_widths": [8, 6]})))
    species, edge_index, edge_vec, owner = image_graph(SYSTEMS["si_diamond"].atoms, wrong.species, wrong.cutoff)
    with pytest.raises(rt.ModelError, match=r"entering interaction 1 have shape \[\d+, 5\], metadata "
                                            r"exchange_widths says \[\d+, 6\]"):
        wrong.evaluate_exchange(species, edge_index, edge_vec, 64, owner)


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
    with pytest.raises(rt.ModelError, match="is TorchScript but not written by hienet-export"):
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
    numbers = re.compile(r"constexpr double (\w+) = ([0-9.eE+-]+);")
    cpp_numbers = {name: float(value) for name, value in numbers.findall(graph_part)}
    python_numbers = {name: value for name, value in vars(keys).items()
                      if name.isupper() and isinstance(value, float)}
    assert cpp_numbers == python_numbers and python_numbers
    format_md = (repo / "export" / "FORMAT.md").read_text()
    for name, value in pattern.findall(metadata_part):
        assert f"`{value}`" in format_md, f"metadata key {value} not in export/FORMAT.md"
