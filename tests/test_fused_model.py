"""The model's two convolution kernels ("fused" operator, "e3nn" reference) give the same model.

Energies, forces and stress, training gradients (the second derivatives behind a force loss),
checkpoints, exported files (metadata, numbers, loaders' errors) and the odd graphs: isolated
atoms, atoms without neighbours, one species.
"""
import json
import zipfile

import numpy as np
import pytest
import torch

from hienet import ops
from hienet.checkpoint import load_model, save_checkpoint
from hienet.deploy import DeployedModel, read_metadata
from hienet.export import export_model
from hienet.graph import graph_of_atoms
from hienet.model.forces import evaluate

from conftest import make_model

pytestmark = pytest.mark.skipif(not ops.available(), reason=f"no operator library: {ops.load_error()}")


def model(seed, **overrides):
    """A random model with every l = 0..3 path, small enough to build and run fast."""
    overrides.setdefault("hidden_irreps", ["8x0e+4x1e+2x2e+2x3e", "8x0e+4x1e+2x2e+2x3e", "8x0e"])
    return make_model("small", seed=seed, invariant_features=8, radial_mlp_hidden=[16], **overrides)


def outputs(model, atoms, kernel, create_graph=False):
    model.set_convolution(kernel)
    graph = graph_of_atoms(atoms, model.cutoff)
    dtype = next(model.parameters()).dtype
    species = torch.tensor([model.species.index(s) for s in atoms.get_chemical_symbols()])
    return evaluate(model, species, torch.as_tensor(graph.edge_index),
                    torch.as_tensor(graph.edge_vec, dtype=dtype), create_graph=create_graph)


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_kernels_give_the_same_energy_forces_and_virial(structures, parity, dtype, tol):
    m = model(4, parity=parity).to(dtype)
    for k in (2, 6, 10):    # triclinic 6 species, slab + adatom, dense random cell
        ref = outputs(m, structures[k], "e3nn")
        ours = outputs(m, structures[k], "fused")
        for key in ("atom_energy", "forces", "virial"):
            assert relative_error(ours[key], ref[key]) <= tol, (k, key)


def test_training_gradients_agree(structures):
    """Force training differentiates the forces: the operator's second derivatives."""
    from hienet.train.loss import WeightedHuberLoss

    m = model(5).train()
    atoms = structures[2]
    target = {"energy": torch.tensor([-100.0], dtype=torch.float64),
              "forces": torch.zeros(len(atoms), 3, dtype=torch.float64),
              "num_atoms": torch.tensor([len(atoms)]), "has_stress": torch.tensor([False])}
    grads = {}
    for kernel in ("e3nn", "fused"):
        m.zero_grad()
        loss, _ = WeightedHuberLoss(huber_delta=10.0)(outputs(m, atoms, kernel, create_graph=True), target)
        loss.backward()
        grads[kernel] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    assert grads["fused"].keys() == grads["e3nn"].keys()
    assert any("radial_mlp" in n for n in grads["fused"])    # reached through the operator
    for name, ref in grads["e3nn"].items():
        assert relative_error(grads["fused"][name], ref) <= 1e-10, name


def test_checkpoints_and_weights_are_the_same_for_both_kernels(tmp_path):
    fused = model(6, convolution="fused")
    e3nn = model(6, convolution="e3nn")
    assert fused.convolution == "fused" and e3nn.convolution == "e3nn"
    assert fused.state_dict().keys() == e3nn.state_dict().keys()
    save_checkpoint(tmp_path / "fused.pth", fused)
    loaded = load_model(tmp_path / "fused.pth")
    loaded.set_convolution("e3nn")
    for name, tensor in fused.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_isolated_atoms_atoms_without_neighbours_and_one_species(structures):
    from ase import Atoms

    m = model(7)
    cases = [structures[7], structures[9], structures[5]]    # no edges; dimer past the cutoff; H2O
    cases.append(Atoms("Si3", positions=[[0, 0, 0], [2.3, 0, 0], [12, 0, 0]], cell=[30, 30, 30], pbc=False))
    for atoms in cases:
        ref = outputs(m, atoms, "e3nn")
        ours = outputs(m, atoms, "fused")
        for key in ("atom_energy", "forces"):
            torch.testing.assert_close(ours[key], ref[key], rtol=1e-12, atol=1e-14)
    assert torch.all(ours["forces"][2] == 0)    # the far Si atom
    one = model(8, species=["Si"], shift=[-5.0])
    atoms = structures[0]
    ref, ours = outputs(one, atoms, "e3nn"), outputs(one, atoms, "fused")
    assert relative_error(ours["forces"], ref["forces"]) <= 1e-12


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kernels")
    paths = {}
    for kernel in ("fused", "e3nn"):
        paths[kernel] = folder / f"{kernel}.pt"
        export_model(model(9), paths[kernel], dtype="float64", convolution=kernel)
    return paths


def test_exported_files_name_their_kernel_and_operators(exports, structures):
    fused, e3nn = read_metadata(exports["fused"]), read_metadata(exports["e3nn"])
    assert fused["format_version"] == 2
    assert fused["convolution"] == "fused" and fused["custom_ops"] == ["hienet::convolution_available", "hienet::convolution_radial"]
    assert e3nn["convolution"] == "e3nn" and e3nn["custom_ops"] == []
    assert fused["model_hash"] == e3nn["model_hash"]    # same function, same weights
    a, b = (DeployedModel(exports[k]).evaluate(structures[10]) for k in ("fused", "e3nn"))
    for key in ("energies", "forces", "stress"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12 * np.abs(b[key]).max())


def test_cpp_runtime_runs_the_fused_file(exports, structures):
    from hienet._runtime import Model

    atoms = structures[10]
    graph = graph_of_atoms(atoms, 5.0)
    deployed = DeployedModel(exports["e3nn"])
    species = np.array([deployed.species.index(s) for s in atoms.get_chemical_symbols()])
    ref = deployed.evaluate(atoms)
    out = Model(str(exports["fused"]), device="cpu").evaluate(species, graph.edge_index, graph.edge_vec, len(atoms))
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=1e-12 * np.abs(ref["forces"]).max())
    assert out["energy"] == pytest.approx(ref["energy"], rel=1e-13)


def with_metadata(src, dst, **changes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("extra/metadata.json"):
                data = json.dumps({**json.loads(data), **changes}).encode()
            zout.writestr(item, data)
    return dst


def test_a_file_needing_unknown_operators_is_refused_by_name(exports, tmp_path):
    from hienet._runtime import Model, ModelError

    path = with_metadata(exports["fused"], tmp_path / "newer.pt",
                         custom_ops=["hienet::convolution", "hienet::future_op"])
    with pytest.raises(ValueError, match=r"needs the custom operator\(s\) hienet::future_op"):
        DeployedModel(path)
    with pytest.raises(ModelError, match="needs the custom operator hienet::future_op, which is not "
                                         "registered: the HIENet operator library libhienet_ops.so"):
        Model(str(path))


def test_missing_operator_library_is_a_clear_error(exports, tmp_path):
    """A process that cannot load libhienet_ops.so says so, naming the file and the way out."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import hienet.ops as ops
        ops.LIBRARY_FILE = "libhienet_ops_moved_away.so"
        from hienet.deploy import DeployedModel
        try:
            DeployedModel({str(exports["fused"])!r})
        except ValueError as err:
            print(err)
        from hienet.model import build_model, make_config
        print(build_model(make_config("tiny", species=["Si"])).convolution)
        try:
            build_model(make_config("tiny", species=["Si"], convolution="fused"))
        except RuntimeError as err:
            print(err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert ("needs the custom operator(s) hienet::convolution_available, hienet::convolution_radial "
            "from the HIENet operator library") in lines[0]
    assert "libhienet_ops_moved_away.so is missing" in lines[0] and "--convolution e3nn" in lines[0]
    assert lines[1] == "e3nn"    # "auto" falls back to the reference kernel
    assert "libhienet_ops_moved_away.so is missing" in lines[2] and "convolution='e3nn'" in lines[2]
