"""The lean GPU step of the C++ runtime (model.h: StepMode::Device, struct Pairs, topology
serials), run on the CPU: the same tensor operations a GPU runs, checked against the host
loops (StepMode::Host, the CPU default), against the Python reference of the exported file
(tests/lammps_helpers.py::reference) and for what travels between host and device.
"""
import numpy as np
import pytest

from lammps_helpers import make_systems, neighbor_graph, reference, runtime
from toy_model import TOY_CUTOFF, write_toy_model

SYSTEMS = make_systems()
SKIN = 1.0


@pytest.fixture(scope="module")
def rt():
    return runtime()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("step")
    return {dtype: write_toy_model(d / f"toy_{dtype}.pt", dtype) for dtype in ("float64", "float32")}


def pair_graph(atoms, species_list, cutoff=TOY_CUTOFF, skin=SKIN):
    """A neighbour list as pair_style hienet hands it over in graph local: every pair within
    cutoff + skin, periodic images as positions of their own (folded onto their atoms as
    nodes). Returns species, a function positions(atoms) -> points, pair_points, pair_nodes."""
    from vesin import NeighborList

    pbc = [bool(p) for p in atoms.pbc]
    box = np.array(atoms.cell.array, dtype=float) if any(pbc) else np.zeros((3, 3))
    i, j, S = NeighborList(cutoff=cutoff + skin, full_list=True).compute(
        points=np.asarray(atoms.positions, dtype=float), box=box, periodic=pbc, quantities="ijS")
    n = len(atoms)
    species = np.array([species_list.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
    shifts = np.asarray(S, dtype=float)

    def points(moved):
        x = np.asarray(moved.positions, dtype=float)
        return np.concatenate([x, x[j] + shifts @ np.asarray(moved.cell.array, dtype=float)])

    pair_points = np.stack([i, n + np.arange(len(j))]).astype(np.int64)
    pair_nodes = np.stack([i, j]).astype(np.int64)
    return species, points, pair_points, pair_nodes


def fresh(model, atoms, atom_virial=9):
    """An evaluation from scratch: vesin's edges at the cutoff, no topology kept (on a model
    of its own: a model keeps one topology, and this one would replace it)."""
    i, j, D = neighbor_graph(atoms, model.cutoff)
    species = np.array([model.species.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
    return model.evaluate(species, np.stack([i, j]), D, len(atoms), atom_virial)


def assert_same(got, want, atol=1e-12, keys=("energy", "atom_energy", "forces", "virial", "atom_virial")):
    for key in keys:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=atol, err_msg=key)


def moved(atoms, rng, amplitude):
    out = atoms.copy()
    out.positions += amplitude * rng.uniform(-1, 1, out.positions.shape)
    return out


def test_step_mode_choice(rt, toy, monkeypatch):
    assert rt.Model(str(toy["float64"]), device="cpu").step == "host"          # the CPU default
    assert rt.Model(str(toy["float64"]), step="device").step == "device"
    monkeypatch.setenv("HIENET_STEP", "device")
    assert rt.Model(str(toy["float64"])).step == "device"
    assert rt.Model(str(toy["float64"]), step="host").step == "host"           # explicit wins
    monkeypatch.setenv("HIENET_STEP", "gpu")
    with pytest.raises(rt.ModelError, match="HIENET_STEP must be auto, host or device, got 'gpu'"):
        rt.Model(str(toy["float64"]))
    with pytest.raises(ValueError, match="step must be 'auto', 'host' or 'device'"):
        rt.Model(str(toy["float64"]), step="lean")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_device_assembly_matches_host_loops_and_reference(rt, toy, dtype):
    """Forces, global and per-atom virials (6 and 9 components) from the device's segment sums
    against the host loops on the same model outputs, and against the Python reference."""
    device = rt.Model(str(toy[dtype]), step="device")
    host = rt.Model(str(toy[dtype]), step="host")
    for name, system in SYSTEMS.items():
        atoms = system.atoms
        species, points, pair_points, pair_nodes = pair_graph(atoms, device.species)
        for nv in (6, 9):
            lean = device.evaluate_pairs(species, points(atoms), pair_points, pair_nodes, len(atoms), nv)
            loops = host.evaluate_pairs(species, points(atoms), pair_points, pair_nodes, len(atoms), nv)
            # the same model inputs: only the summation order of the assembly differs
            assert_same(lean, loops, atol=1e-12 if dtype == "float64" else 1e-9)
        ref = reference(toy[dtype], atoms)
        scale = max(np.abs(ref["forces"]).max(), 1.0)
        tol = 1e-12 if dtype == "float64" else 1e-5 * scale
        np.testing.assert_allclose(lean["forces"], ref["forces"], rtol=0, atol=tol, err_msg=name)
        np.testing.assert_allclose(lean["atom_virial"], ref["centroid_virial"], rtol=0, atol=tol, err_msg=name)
        np.testing.assert_allclose(lean["virial"], ref["virial"], rtol=0, atol=tol, err_msg=name)
        np.testing.assert_allclose(lean["atom_virial"][:, :6].sum(0), lean["virial"], rtol=0, atol=1e-10)


def test_topology_kept_while_atoms_move(rt, toy):
    """One pair list (cutoff + skin), positions moved under the same serial: pairs cross the
    cutoff, the topology is not uploaded again, and every step equals a fresh evaluation."""
    model = rt.Model(str(toy["float64"]), step="device")
    scratch = rt.Model(str(toy["float64"]), step="device")
    atoms = SYSTEMS["mixed"].atoms
    species, points, pair_points, pair_nodes = pair_graph(atoms, model.species)
    rng = np.random.default_rng(3)
    edges = set()
    for step in range(4):
        now = atoms if step == 0 else moved(atoms, rng, 0.45 * SKIN / np.sqrt(3))
        out = model.evaluate_pairs(species, points(now), pair_points, pair_nodes, len(now), 9, topology=7)
        stats = model.last_step
        assert stats["topology_uploaded"] == (step == 0)
        assert stats["topology_uploads"] == 1
        edges.add(stats["num_edges"])
        assert_same(out, fresh(scratch, now))
        # one upload of positions (doubles) and one bit per pair, one download
        P, points_count = pair_points.shape[1], len(points(now))
        if step > 0:
            assert stats["uploads"] == 1 and stats["downloads"] == 1
            assert stats["upload_bytes"] <= 24 * points_count + P // 8 + 128
    assert len(edges) > 1, "the moves should carry pairs across the cutoff"


def test_new_serial_uploads_and_old_serial_is_trusted(rt, toy):
    """A new serial brings a new topology (atoms that changed neighbours); the same serial is
    the caller's promise that nothing but positions changed: the model keeps what it has."""
    model = rt.Model(str(toy["float64"]), step="device")
    scratch = rt.Model(str(toy["float64"]), step="device")
    atoms = SYSTEMS["si_diamond"].atoms
    species, points, pair_points, pair_nodes = pair_graph(atoms, model.species)
    model.evaluate_pairs(species, points(atoms), pair_points, pair_nodes, len(atoms), 0, topology=1)

    # far moves: a rebuilt pair list under a new serial equals a fresh evaluation
    far = moved(atoms, np.random.default_rng(5), 1.5)
    s2, points2, pp2, pn2 = pair_graph(far, model.species)
    out = model.evaluate_pairs(s2, points2(far), pp2, pn2, len(far), 9, topology=2)
    assert model.last_step["topology_uploaded"]
    assert_same(out, fresh(scratch, far))

    # other species under the old serial are not looked at (the topology is cached) ...
    other = species.copy()
    other[:5] = model.species.index("C")
    kept = model.evaluate_pairs(other, points2(far), pp2, pn2, len(far), 9, topology=2)
    assert_same(kept, out, atol=0)
    # ... and are, under a new one
    changed = model.evaluate_pairs(other, points2(far), pp2, pn2, len(far), 9, topology=3)
    assert abs(changed["energy"] - out["energy"]) > 1e-3
    # a serial given again with a graph of another size is refused, naming the serial
    with pytest.raises(rt.ModelError, match="topology serial 3 was given before to a graph of another size"):
        model.evaluate_pairs(other, points2(far), pp2[:, :-1], pn2[:, :-1], len(far), 0, topology=3)
    # serial 0: uploaded every call
    for _ in range(2):
        model.evaluate_pairs(species, points(atoms), pair_points, pair_nodes, len(atoms), 0, topology=0)
        assert model.last_step["topology_uploaded"]


def test_edge_arrays_with_a_serial(rt, toy):
    """The edge-array graph keeps species and edge index under a serial too; per step only
    the edge vectors travel."""
    model = rt.Model(str(toy["float64"]), step="device")
    atoms = SYSTEMS["triclinic"].atoms
    i, j, D = neighbor_graph(atoms, model.cutoff)
    species = np.array([model.species.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
    first = model.evaluate(species, np.stack([i, j]), D, len(atoms), 6, topology=11)
    again = model.evaluate(species, np.stack([i, j]), D * 1.001, len(atoms), 6, topology=11)
    stats = model.last_step
    assert not stats["topology_uploaded"] and stats["upload_bytes"] <= 24 * len(i) + 64
    assert abs(again["energy"] - first["energy"]) > 1e-6
    scratch = rt.Model(str(toy["float64"]), step="host")
    assert_same(again, scratch.evaluate(species, np.stack([i, j]), D * 1.001, len(atoms), 6))


def test_lengths_in_other_units(rt, toy):
    """Positions in another length unit (LAMMPS's units real/si/...): cutoff and vectors scaled."""
    model = rt.Model(str(toy["float64"]), step="device")
    atoms = SYSTEMS["rocksalt"].atoms
    species, points, pair_points, pair_nodes = pair_graph(atoms, model.species)
    unit = 1.8897261246    # Bohr per Å
    out = model.evaluate_pairs(species, points(atoms) * unit, pair_points, pair_nodes, len(atoms), 9,
                               length_unit=unit)
    assert_same(out, fresh(rt.Model(str(toy["float64"])), atoms), atol=1e-11)


def test_bad_pairs_are_named(rt, toy):
    model = rt.Model(str(toy["float64"]), step="device")
    x = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.55, 0.0, 0.0]])
    pp = np.array([[0, 1], [1, 2]])
    with pytest.raises(rt.ModelError, match=r"nodes 1 and 2 are 0.05 A apart \(< 0.1 A\)"):
        model.evaluate_pairs(np.array([0, 1, 2]), x, pp, pp, 3)
    x[2] = np.nan
    with pytest.raises(rt.ModelError, match="edge 1 between nodes 1 and 2 has a non-finite vector"):
        model.evaluate_pairs(np.array([0, 1, 2]), x, pp, pp, 3)
    with pytest.raises(rt.ModelError, match=r"point_j\[1\] = 5 is outside points 0..2"):
        model.evaluate_pairs(np.array([0, 1, 2]), x, np.array([[0, 1], [1, 5]]), pp, 3)
    with pytest.raises(rt.ModelError, match="length_unit"):
        model.evaluate_pairs(np.array([0, 1, 2]), x, pp, pp, 3, length_unit=0.0)


def image_pairs(atoms, species_list, cutoff=TOY_CUTOFF, skin=SKIN):
    """One 'rank' of graph exchange as pairs: owners 0..n-1, each periodic image a ghost node
    (and a point) of its own; pairs centred on owners. Returns species, points(atoms),
    pair_points, pair_nodes, owner."""
    from vesin import NeighborList

    pbc = [bool(p) for p in atoms.pbc]
    box = np.array(atoms.cell.array, dtype=float) if any(pbc) else np.zeros((3, 3))
    i, j, S = NeighborList(cutoff=cutoff + skin, full_list=True).compute(
        points=np.asarray(atoms.positions, dtype=float), box=box, periodic=pbc, quantities="ijS")
    n = len(atoms)
    owner, ghost_of, neighbour, shift_of = list(range(n)), {}, [], [(0, 0, 0)] * n
    for a, shift in zip(j.tolist(), map(tuple, np.asarray(S).tolist())):
        if shift == (0, 0, 0):
            neighbour.append(a)
            continue
        if (a, shift) not in ghost_of:
            ghost_of[(a, shift)] = len(owner)
            owner.append(a)
            shift_of.append(shift)
        neighbour.append(ghost_of[(a, shift)])
    owner = np.array(owner, dtype=np.int64)
    shifts = np.array(shift_of, dtype=float)
    species = np.array([species_list.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)[owner]

    def points(moved):
        return np.asarray(moved.positions, dtype=float)[owner] + shifts @ np.asarray(moved.cell.array, dtype=float)

    nodes = np.stack([i, neighbour]).astype(np.int64)
    return species, points, nodes.copy(), nodes, owner


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exchange_moves_only_rows_with_images(rt, toy, dtype):
    """graph exchange on the lean step: only the owners with images and the ghost rows travel,
    the results equal the host loops with every owner exchanged and the Python reference."""
    device = rt.Model(str(toy[dtype]), step="device")
    host = rt.Model(str(toy[dtype]), step="host")
    atoms = SYSTEMS["si_diamond"].atoms * (2, 1, 1)           # 128 atoms: some have no image
    species, points, pp, pn, owner = image_pairs(atoms, device.species)
    n, N = len(atoms), len(owner)
    lean = device.evaluate_pairs(species, points(atoms), pp, pn, n, 9, topology=1, owner=owner)
    every = host.evaluate_pairs(species, points(atoms), pp, pn, n, 9, topology=1, owner=owner, all_owners=True)
    stats = device.last_step
    with_images = len(np.unique(owner[n:]))
    assert stats["owners_with_images"] == with_images < n
    itemsize = 8 if dtype == "float64" else 4
    widths = device.metadata["exchange_widths"]
    # per exchange: the owners' rows one way, the ghost rows the other way (forward and reverse)
    assert stats["exchange_copies"] == 4 * len(widths)
    assert stats["exchange_bytes"] == 2 * sum(w * itemsize * (with_images + N - n) for w in widths)
    assert lean["owner_queries"] == 1 and every["owner_queries"] == 1
    assert_same(lean, every, atol=1e-11 if dtype == "float64" else 1e-8)
    forces = np.zeros((n, 3))
    np.add.at(forces, owner, lean["forces"])
    ref = reference(toy[dtype], atoms)
    scale = max(np.abs(ref["forces"]).max(), 1.0)
    np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=(1e-11 if dtype == "float64" else 1e-5) * scale)
    # the same topology again: the exchange is not asked again, atoms moved
    now = moved(atoms, np.random.default_rng(1), 0.2)
    again = device.evaluate_pairs(species, points(now), pp, pn, n, 0, topology=1, owner=owner)
    assert again["owner_queries"] == 0 and not device.last_step["topology_uploaded"]
    assert again["energy"] == pytest.approx(reference(toy[dtype], now)["energy"], abs=1e-9 if dtype == "float64" else 1e-3)


def test_edge_graph_exchange_on_the_device_step(rt, toy):
    """evaluate_exchange (edge arrays) on the lean step, against the host step."""
    from test_cpp_runtime import image_graph

    device = rt.Model(str(toy["float64"]), step="device")
    host = rt.Model(str(toy["float64"]), step="host")
    for name in ("triclinic", "short_cell", "slab"):
        species, edge_index, edge_vec, owner = image_graph(SYSTEMS[name].atoms, device.species, device.cutoff)
        n = len(SYSTEMS[name].atoms)
        assert_same(device.evaluate_exchange(species, edge_index, edge_vec, n, owner, 9),
                    host.evaluate_exchange(species, edge_index, edge_vec, n, owner, 9), atol=1e-11)
