"""TorchScript export: exported file == eager model, metadata, and clear errors."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from ase import Atoms

from hienet.calculator import HIENetCalculator
from hienet.checkpoint import save_checkpoint
from hienet.deploy import DeployedModel, read_metadata
from hienet.export import export_model, model_hash
from hienet.graph import graph_of_atoms

from conftest import load_reference, make_model, reference_file

EXPORT = [sys.executable, "-m", "hienet.export.cli"]


@pytest.fixture(scope="module")
def smooth_model():
    return make_model("small", seed=11)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, smooth_model):
    folder = tmp_path_factory.mktemp("exported")
    paths = {}
    for dtype in ("float64", "float32"):
        paths[dtype] = folder / f"model-{dtype}.pt"
        export_model(make_model("small", seed=11), paths[dtype], dtype=dtype)
    return paths


def ase_results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_potential_energies(), atoms.get_forces(), atoms.get_stress()


def test_exported_float64_equals_eager(structures, smooth_model, exported):
    eager, deployed = HIENetCalculator(smooth_model), HIENetCalculator(str(exported["float64"]))
    assert deployed.deployed is not None
    for atoms in structures:
        e0, ea0, f0, s0 = ase_results(eager, atoms)
        e1, ea1, f1, s1 = ase_results(deployed, atoms)
        assert abs(e1 - e0) <= 1e-10
        np.testing.assert_allclose(ea1, ea0, rtol=0, atol=1e-10)
        np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-10)
        np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-12)


def test_exported_float32_close_to_eager(structures, smooth_model, exported):
    eager, deployed = HIENetCalculator(smooth_model), HIENetCalculator(str(exported["float32"]))
    for atoms in structures:
        e0, _, f0, s0 = ase_results(eager, atoms)
        e1, _, f1, s1 = ase_results(deployed, atoms)
        assert abs(e1 - e0) <= 1e-5 * abs(e0) + 1e-6
        scale = max(np.abs(f0).max(), 1e-3)
        # + 1e-6: float32 round-off of the energy scale, visible where forces nearly vanish
        # (the dimer at 4.999 Å: |F| ~ 4e-8 eV/Å, float32 error ~ 1.5e-7 eV/Å)
        np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-5 * scale + 1e-6)
        np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-5 * max(np.abs(s0).max(), 1e-4))


def test_exported_official_small_reproduces_official_numbers(structures, tmp_path):
    path = tmp_path / "official-small.pt"
    out = subprocess.run(
        EXPORT + [str(reference_file("small/checkpoint_like.pth")), "-o", str(path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "95,160" in out.stdout and "receptive field 25 Å" in out.stdout
    calc = HIENetCalculator(str(path))
    for atoms, ref in zip(structures, load_reference("small/reference_outputs.json")):
        e, ea, f, s = ase_results(calc, atoms)
        assert abs(e - ref["energy"]) / len(atoms) <= 1e-8
        np.testing.assert_allclose(ea, ref["energies"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(f, np.reshape(ref["forces"], (-1, 3)), rtol=0, atol=1e-8)
        np.testing.assert_allclose(s, ref["stress"], rtol=0, atol=1e-8)


def test_stage_methods_compose_to_forward(structures, exported):
    model = DeployedModel(exported["float64"])
    module = model.module
    atoms = structures[2]
    graph = graph_of_atoms(atoms, model.cutoff)
    species = torch.tensor([model.species.index(s) for s in atoms.get_chemical_symbols()])
    edge_index, edge_vec = torch.from_numpy(graph.edge_index), torch.from_numpy(graph.edge_vec)
    radial, envelope, sh = module.edge_features(edge_vec)
    x = module.invariant_layer(module.embed(species), edge_index, radial, envelope)
    for k in range(model.metadata["num_message_passing_layers"] - 1):
        x = module.interaction(k, x, edge_index, radial, sh)
    staged = module.readout(x, species)
    energy, atom_energy, _ = model(species, edge_index, edge_vec, len(atoms))
    torch.testing.assert_close(staged, atom_energy, rtol=0, atol=1e-12)

    # n_out: only the first rows, the same numbers, when no edge aggregates at a later row
    n_out = 3
    rows = torch.arange(n_out)
    keep = torch.isin(edge_index[0], rows)                    # equivariant blocks sum at [0]
    ei = edge_index[:, keep]
    r, e, y = radial[keep], envelope[keep], sh[keep]
    x_full = module.invariant_layer(module.embed(species), ei.flip(0), r, e)
    x_part = module.invariant_layer(module.embed(species), ei.flip(0), r, e, n_out)
    assert x_part.shape[0] == n_out
    torch.testing.assert_close(x_part, x_full[:n_out], rtol=0, atol=1e-14)
    y_full = module.interaction(0, x_full, ei, r, y)
    y_part = module.interaction(0, torch.cat([x_part, x_full[n_out:]]), ei, r, y, n_out)
    assert y_part.shape[0] == n_out
    torch.testing.assert_close(y_part, y_full[:n_out], rtol=0, atol=1e-14)


def test_n_local_counts_only_local_nodes(structures, exported):
    model = DeployedModel(exported["float64"])
    atoms = structures[10]
    graph = graph_of_atoms(atoms, model.cutoff)
    species = torch.tensor([model.species.index(s) for s in atoms.get_chemical_symbols()])
    args = species, torch.from_numpy(graph.edge_index), torch.from_numpy(graph.edge_vec)
    e_all, ea_all, _ = model(*args, len(atoms))
    e_part, ea_part, g_part = model(*args, 15)
    assert ea_part.shape == (15,)
    torch.testing.assert_close(ea_part, ea_all[:15], rtol=0, atol=0)
    assert float(e_part.detach()) == pytest.approx(float(ea_all[:15].detach().sum()), abs=1e-10)
    # the gradient of a partial energy still reaches edges between non-local nodes
    assert g_part.abs().sum() > 0


def test_metadata_round_trip_and_stable_hash(tmp_path, smooth_model):
    ckpt = tmp_path / "m.pth"
    save_checkpoint(ckpt, smooth_model)
    hashes = []
    for name in ("a.pt", "b.pt"):
        out = subprocess.run(EXPORT + [str(ckpt), "-o", str(tmp_path / name), "--dtype", "float32"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        meta = read_metadata(tmp_path / name)
        hashes.append(meta["model_hash"])
    assert hashes[0] == hashes[1] == model_hash(smooth_model)
    assert meta["format_version"] == 2 and meta["dtype"] == "float32"
    # the features entering each equivariant block: 32x0e, then the hidden irreps but the last
    assert meta["exchange_widths"] == [32, 32 + 8 * 3 + 4 * 5, 32 + 24 + 20 + 2 * 7, 32 + 24 + 20 + 14]
    assert meta["species"] == smooth_model.species and meta["cutoff"] == 5.0
    assert meta["num_message_passing_layers"] == 5
    assert meta["units"] == {"energy": "eV", "length": "Å"}
    assert meta["torch_version"] == torch.__version__
    assert meta["config"] == {**json.loads(json.dumps(smooth_model.config)), "convolution": "fused"}
    other = make_model("small", seed=12)
    assert model_hash(other) != hashes[0]


def test_help_documents_every_option():
    out = subprocess.run(EXPORT + ["--help"], capture_output=True, text=True)
    for option in ("checkpoint", "--output", "--dtype", "--device", "float32", "float64", "cuda"):
        assert option in out.stdout


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"garbage" * 100, "not a"),
])
def test_export_errors_bad_checkpoint(tmp_path, content, message):
    path = tmp_path / "in.pth"
    if content is not None:
        path.write_bytes(content)
    out = subprocess.run(EXPORT + [str(path), "-o", str(tmp_path / "o.pt")], capture_output=True, text=True)
    assert out.returncode == 1
    assert message in out.stderr and "in.pth" in out.stderr


def test_deploy_errors(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DeployedModel(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(exported["float64"].read_bytes()[: 4000])
    with pytest.raises(ValueError, match="corrupt.pt"):
        DeployedModel(corrupt)
    # a future format version is refused by name
    future = tmp_path / "future.pt"
    with zipfile.ZipFile(exported["float64"]) as src, zipfile.ZipFile(future, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/metadata.json"):
                meta = json.loads(data)
                meta["format_version"] = 99
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match="unsupported HIENet model format version 99"):
        DeployedModel(future)
    atoms = Atoms("Au", positions=[[0, 0, 0]], cell=[9, 9, 9], pbc=True)
    with pytest.raises(ValueError, match=r"Au not in .*model-float64.pt"):
        DeployedModel(exported["float64"]).evaluate(atoms)
