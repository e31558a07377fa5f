"""Data streamed from disk (`data.stream: true`) against data held in memory.

References: the in-memory path (every graph built up front from `ase.io.read` of the whole file),
numpy's least squares on the full matrix and the plain force RMS for the chunked statistics.
"""
import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from hienet.checkpoint import load_checkpoint
from hienet.graph import keys as K
from hienet.train import Trainer, statistics
from hienet.train.cli import main as train_main
from hienet.train.dataset import GraphDataset, read_structures, summary_of
from hienet.train.statistics import ChunkedStatistics, chunk_positions, combine, fit_energy_shift, num_chunks
from hienet.train.streaming import StreamedGraphDataset, index_file

from test_train import base_config, lj_frames, quiet


@pytest.fixture(scope="module")
def frames():
    out = lj_frames(12, seed=4)
    for k, atoms in enumerate(out):
        atoms.info["config_type"] = f"lj-{k}"
    return out


@pytest.fixture(scope="module")
def data(frames, tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "lj12.extxyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def items_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_streamed_training_gives_the_weights_of_training_in_memory(data, tmp_path):
    """12 structures, a cache of 3 graphs, one DataLoader worker: the same bits as in memory."""
    memory = Trainer(base_config(data, tmp_path / "memory", epochs=2, batch_size=3), log=quiet)
    memory.fit()
    config = base_config(data, tmp_path / "stream", epochs=2, batch_size=3, num_workers=1)
    config["data"].update(stream=True, cache_size=3)
    streamed = Trainer(config, log=quiet)
    assert isinstance(streamed.train_set, StreamedGraphDataset) and len(streamed.train_set) > 3
    streamed.fit()
    streamed.close()
    assert streamed.statistics == memory.statistics
    a = load_checkpoint(tmp_path / "memory" / "checkpoint_last.pth")
    b = load_checkpoint(tmp_path / "stream" / "checkpoint_last.pth")
    for key in ("state_dict",):
        assert items_equal(a[key], b[key])
    assert items_equal(a["train_state"]["model_state_dict"], b["train_state"]["model_state_dict"])
    assert (tmp_path / "memory" / "metrics.csv").read_text().splitlines()[-1].split(",")[4:] == \
        (tmp_path / "stream" / "metrics.csv").read_text().splitlines()[-1].split(",")[4:]  # all but the time


def test_streamed_graphs_equal_the_in_memory_ones_and_the_cache_is_bounded(frames, data, tmp_path):
    memory = GraphDataset(read_structures(data), ["Si"], 4.0, source=str(data))
    index, species = index_file(data)
    assert species == {"Si"} and len(index) == len(frames)
    streamed = StreamedGraphDataset(index, range(len(index)), ["Si"], 4.0, str(data), cache_size=2)
    for i in (0, 5, 11, 5, 3):
        assert items_equal(streamed[i], memory[i])
        assert len(streamed._cache) <= 2
    assert streamed.name(7) == memory.name(7) == f"{data} structure 7 (config_type=lj-7)"
    sub = streamed.subset([2, 9])
    assert items_equal(sub[1], memory.subset([2, 9])[1]) and sub.name(1) == memory.name(9)
    # an ASE database streams the same graphs
    db = tmp_path / "lj.db"
    with ase.db.connect(db) as conn:
        for atoms in frames:
            conn.write(atoms, config_type=atoms.info["config_type"])
    rows, db_species = index_file(db)
    from_db = StreamedGraphDataset(rows, range(len(rows)), ["Si"], 4.0, str(db))
    assert db_species == {"Si"}
    exact = GraphDataset(frames, ["Si"], 4.0)  # the database keeps every digit, extxyz 8 decimals
    for i in (0, 11):
        assert items_equal(from_db[i], exact[i])
    assert from_db.name(3) == f"{db} structure 3 (config_type=lj-3)"


def test_the_index_reads_species_columns_and_names_a_truncated_file(frames, tmp_path):
    mixed = [a.copy() for a in frames[:3]]
    for atoms, src in zip(mixed, frames):
        atoms.calc = SinglePointCalculator(atoms, **src.calc.results)
    mixed[1].symbols[0] = "C"
    path = tmp_path / "mixed.xyz"
    ase.io.write(path, mixed, format="extxyz")
    index, species = index_file(path)
    assert species == {"C", "Si"} and index.natoms.tolist() == [8, 8, 8]
    assert index.read(1).get_chemical_symbols()[0] == "C"
    lines = path.read_text().splitlines(True)
    (tmp_path / "cut.xyz").write_text("".join(lines[:-3]))
    with pytest.raises(ValueError, match=r"cut.xyz: structure 2 \(line 21\) ends after 5 of its 8 atom lines"):
        index_file(tmp_path / "cut.xyz")
    with pytest.raises(ValueError, match=r"data.stream reads extxyz .* not x.cif"):
        (tmp_path / "x.cif").write_text("")
        index_file(tmp_path / "x.cif")


def test_chunked_statistics_do_not_depend_on_the_sharding(monkeypatch):
    """Chunks of 7 structures summarised by 1 or 3 ranks: the same bits; and the same numbers
    as least squares on the whole matrix and the plain force RMS."""
    monkeypatch.setattr(statistics, "CHUNK", 7)
    rng = np.random.default_rng(3)
    n, s = 40, 4
    counts = rng.integers(0, 9, size=(n, s))
    counts[:, 3] = 0  # a species that never occurs
    energies = counts @ np.array([-3.0, -1.5, -7.25, 0.0]) + rng.normal(0, 0.1, n)
    forces = [rng.normal(0, 0.7, (int(c.sum()), 3)) for c in counts]
    edges = rng.integers(10, 200, n)
    summaries = [statistics.Summary(counts=c, energy=e, force_sq=float(np.sum(f**2)), force_n=f.size, num_edges=int(m))
                 for c, e, f, m in zip(counts, energies, forces, edges)]

    def run(world):
        parts = []
        for rank in range(world):
            acc = ChunkedStatistics(s)
            for p in reversed(list(chunk_positions(n, rank, world))):  # arrival order does not matter
                acc.add(p, summaries[p])
            parts.append(acc.results())
        return combine(parts[::-1], s, num_chunks(n))

    one, three = run(1), run(3)
    assert one == three and num_chunks(n) == 6
    np.testing.assert_allclose(one["shift"], fit_energy_shift(counts, energies), rtol=1e-12, atol=1e-12)
    assert one["shift"][3] == 0.0
    assert one["scale"] == pytest.approx(float(np.sqrt(np.mean(np.concatenate(forces) ** 2))), rel=1e-13)
    assert one["conv_denominator"] == pytest.approx(edges.sum() / counts.sum(), rel=1e-14)
    with pytest.raises(RuntimeError, match="incomplete"):
        combine([{}], s, 2)


def test_summary_of_a_graph(frames):
    dataset = GraphDataset(frames[:1], ["H", "Si"], 4.0)
    summary = summary_of(dataset[0], 2)
    item = dataset[0]
    assert summary.counts.tolist() == [0, 8] and summary.num_edges == item[K.EDGE_INDEX].shape[1]
    assert summary.force_sq == pytest.approx(float((item[K.FORCES] ** 2).sum()), rel=1e-15)


def test_a_bad_streamed_label_is_named(frames, tmp_path, capsys):
    import yaml

    bad = [a.copy() for a in frames]
    for i, (atoms, src) in enumerate(zip(bad, frames)):
        results = {k: np.array(v, copy=True) if k != "energy" else v for k, v in src.calc.results.items()}
        if i == 4:
            results["forces"][2, 1] = np.nan
        atoms.calc = SinglePointCalculator(atoms, **results)
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, bad, format="extxyz")
    config = base_config(path, tmp_path / "out", num_workers=1)
    config["data"]["stream"] = True
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert train_main([str(tmp_path / "train.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"hienet-train: error: {path} structure 4 (config_type=lj-4): the force label of atom 2 (Si)" in err
    assert not (tmp_path / "out" / "checkpoint_last.pth").exists()


def test_fine_tuning_refuses_streamed_elements_outside_the_checkpoint(tmp_path):
    from conftest import reference_file

    data = tmp_path / "ge.extxyz"
    ase.io.write(data, lj_frames(3, seed=1, symbol="Ge"), format="extxyz")
    config = base_config(data, tmp_path / "run", init_checkpoint=str(reference_file("small/checkpoint_like.pth")))
    config["data"]["stream"] = True
    del config["model"]
    with pytest.raises(ValueError, match="Ge not in"):
        Trainer(config, log=quiet)


@pytest.mark.parametrize("bad, match", [
    ({"data": {"train": "x", "stream": "yes"}}, "data.stream must be true or false"),
    ({"data": {"train": "x", "cache_size": -1}}, "'data.cache_size' must be a non-negative integer"),
    ({"data": {"train": "x"}, "num_workers": 1.5}, "'num_workers' must be a non-negative integer"),
    ({"data": {"train": "x"}, "collective_timeout_s": 0}, "collective_timeout_s must be positive"),
])
def test_streaming_and_process_options_are_checked(bad, match):
    from hienet.train import resolve_config

    with pytest.raises(ValueError, match=match):
        resolve_config(bad)
