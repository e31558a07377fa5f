"""Model files: messages that say what a file is, the archive digest, and atomic writes.

Each bad file is tried on every loader that could meet it (HIENetCalculator,
hienet.deploy.DeployedModel, hienet-export, the C++ runtime behind pair_style hienet) and
the message must name the file and the problem.
"""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from hienet.calculator import HIENetCalculator
from hienet.checkpoint import save_checkpoint
from hienet.deploy import DeployedModel
from hienet.export import export_model
from hienet.integrity import archive_digest
from hienet.pretrained import bundled_model_path

from conftest import make_model
from lammps_helpers import runtime
from toy_model import archive_digest as digest_from_format_md

EXPORT = [sys.executable, "-m", "hienet.export.cli"]
CHECKPOINT = Path(bundled_model_path("si-demo"))
EXPORTED = Path(bundled_model_path("si-demo", exported=True))


def export_cli(*args, subprocess_run=False):
    """hienet-export's exit code and stderr (in-process unless subprocess_run: torch's import
    costs seconds per process; an uncaught exception fails the test either way)."""
    argv = [str(a) for a in args]
    if subprocess_run:
        return subprocess.run(EXPORT + argv, capture_output=True, text=True, timeout=300)
    import contextlib
    import io
    from types import SimpleNamespace

    from hienet.export.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return SimpleNamespace(returncode=code, stderr=err.getvalue())


def silicon():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    return atoms


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture(scope="module")
def foreign_torchscript(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "other.pt"
    torch.jit.script(Identity()).save(str(path))
    return path


# ---------------------------------------------------------------------------------------
# what a file is
# ---------------------------------------------------------------------------------------
def test_torchscript_not_written_by_hienet_export(foreign_torchscript):
    path = foreign_torchscript
    expected = f"{path} is a TorchScript file but not written by hienet-export"
    for load in (HIENetCalculator, DeployedModel):
        with pytest.raises(ValueError) as err:
            load(str(path))
        assert expected in str(err.value) and "weights_only" not in str(err.value)
    out = export_cli(path, "-o", path.with_name("x.pt"))
    assert out.returncode == 1 and expected in out.stderr and "weights_only" not in out.stderr
    with pytest.raises(runtime().ModelError, match=f"'{path}' is TorchScript but not written by hienet-export"):
        runtime().Model(str(path))


def test_checkpoint_given_where_an_exported_file_is_needed():
    with pytest.raises(ValueError, match=f"{CHECKPOINT} is a torch.save file .*not a model written by hienet-export"):
        DeployedModel(CHECKPOINT)
    with pytest.raises(runtime().ModelError, match=f"'{CHECKPOINT}' is a torch.save file"):
        runtime().Model(str(CHECKPOINT))


def test_exported_file_given_to_export(tmp_path):
    out = export_cli(EXPORTED, "-o", tmp_path / "again.pt")
    assert out.returncode == 1
    assert (f"{EXPORTED} is already an exported model (written by hienet-export); export takes "
            "checkpoints") in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "again.pt").exists()


def test_output_is_a_directory(tmp_path):
    out = export_cli("si-demo", "-o", tmp_path, subprocess_run=True)  # the console script end to end
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"-o {tmp_path} is a directory; give a file name, e.g. {tmp_path / 'model.pt'}" in out.stderr
    with pytest.raises(IsADirectoryError, match=f"output file {tmp_path} is a directory"):
        export_model(make_model("tiny"), tmp_path)


def test_model_with_non_finite_weights_is_not_exported(tmp_path):
    model = make_model("tiny")
    with torch.no_grad():
        model.shift[1] = float("nan")
    path = tmp_path / "broken.pth"
    save_checkpoint(path, model)
    out = export_cli(path, "-o", tmp_path / "broken.pt")
    assert out.returncode == 1 and not (tmp_path / "broken.pt").exists()
    assert f"{path}: the model's shift has non-finite values: refusing to export a broken model" in out.stderr


def test_no_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for make in (lambda: HIENetCalculator("si-demo", device="cuda"),
                 lambda: HIENetCalculator(str(EXPORTED), device="cuda"),
                 lambda: DeployedModel(EXPORTED, device="cuda:0")):
        with pytest.raises(RuntimeError, match="requested but there is no CUDA device") as err:
            make()
        assert "corrupt" not in str(err.value)


# ---------------------------------------------------------------------------------------
# a file with valid metadata whose forward() breaks FORMAT.md
# ---------------------------------------------------------------------------------------
def toy_with_forward(forward):
    """The toy model (it has FORMAT.md's stage methods) with another forward()."""
    from toy_model import TOY_CUTOFF, TOY_FEATURES, TOY_LAYERS, TOY_SPECIES, ToyHIENet

    cls = type(forward.__name__, (ToyHIENet,), {"forward": forward})
    return lambda: cls(len(TOY_SPECIES), TOY_CUTOFF, TOY_LAYERS, TOY_FEATURES, 0, True).double()


class _OneTensor(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return edge_vec.sum()


class _WrongShapes(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int):
        return edge_vec.sum(), edge_vec.sum(0), edge_vec


OneTensor = toy_with_forward(_OneTensor.forward)
WrongShapes = toy_with_forward(_WrongShapes.forward)


def write_with_metadata(module, path: Path) -> Path:
    """A TorchScript file with the metadata (and a valid archive digest) of the toy model."""
    from toy_model import write_toy_model

    meta = json.loads(zipfile.ZipFile(write_toy_model(path.with_name("toy-" + path.name))).read(
        f"toy-{path.stem}/extra/metadata.json"))
    scripted = torch.jit.script(module)
    draft = path.with_name("draft-" + path.name)
    scripted.save(str(draft))
    meta["archive_digest"] = digest_from_format_md(draft.read_bytes())
    scripted.save(str(path), _extra_files={"metadata.json": json.dumps(meta)})
    return path


@pytest.mark.parametrize("module, returned", [(OneTensor, "a Tensor"), (WrongShapes, r"shapes \[\[\], \[3\], \[2, 3\]\]")])
def test_wrong_forward_names_the_file_and_the_contract(tmp_path, module, returned):
    from ase import Atoms

    path = write_with_metadata(module(), tmp_path / "wrong.pt")
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[9, 9, 9], pbc=True)
    with pytest.raises(ValueError, match=f"exported model {path}: forward\\(\\) returned {returned}; "
                                         r"expected \(energy \[\], atom_energy \[2\], edge_grad \[\d+, 3\]\)"):
        DeployedModel(path).evaluate(atoms)
    with pytest.raises(runtime().ModelError, match=f"HIENet model '{path}'"):
        model = runtime().Model(str(path))
        model.evaluate(np.array([3, 5]), np.array([[0, 1], [1, 0]]), np.array([[2.5, 0, 0], [-2.5, 0, 0]]), 2)


# ---------------------------------------------------------------------------------------
# integrity: a record changed after export is detected by every loader
# ---------------------------------------------------------------------------------------
def weight_record(path: Path) -> zipfile.ZipInfo:
    """The largest tensor record (constants/N of a frozen export, data/N of a scripted module)."""
    with zipfile.ZipFile(path) as archive:
        tensors = [i for i in archive.infolist() if i.filename.split("/")[1] in ("constants", "data")]
        return max(tensors, key=lambda i: i.file_size)


def flip_byte_in_place(path: Path, info: zipfile.ZipInfo) -> None:
    """Flip one byte of a record's data on disk (the zip's CRC is left stale, like disk damage)."""
    data = bytearray(path.read_bytes())
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26:header + 28], "little")
    extra_len = int.from_bytes(data[header + 28:header + 30], "little")
    start = header + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))


def rewrite_record(src: Path, dst: Path, info: zipfile.ZipInfo) -> None:
    """A deliberate edit: the record changed and the zip rewritten with valid CRCs."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for item in a.infolist():
            data = a.read(item)
            if item.filename == info.filename:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            b.writestr(item, data)


def test_digest_matches_format_md_in_python_and_cpp():
    stored = json.loads(zipfile.ZipFile(EXPORTED).read("si-demo/extra/metadata.json"))["archive_digest"]
    assert stored == archive_digest(EXPORTED) == digest_from_format_md(EXPORTED.read_bytes())
    assert runtime().archive_digest(str(EXPORTED)) == stored


@pytest.mark.parametrize("damage", ["flipped byte", "edited record"])
def test_modified_weights_are_refused(tmp_path, damage):
    path = tmp_path / "damaged.pt"
    info = weight_record(EXPORTED)
    if damage == "flipped byte":
        path.write_bytes(EXPORTED.read_bytes())
        flip_byte_in_place(path, info)
    else:
        rewrite_record(EXPORTED, path, info)
    # the C++ runtime (pair_style hienet) reads records without checking the zip CRC
    with pytest.raises(runtime().ModelError, match=f"HIENet model file '{path}' was modified or damaged after "
                                                   "export .*; re-export it with hienet-export"):
        runtime().Model(str(path))
    for load in (DeployedModel, HIENetCalculator):
        with pytest.raises(ValueError, match=f"{path} (was modified or damaged|cannot be read to check its "
                                             "integrity .*: it was damaged) after export"):
            load(path)


def test_unmodified_file_loads_and_agrees():
    atoms = silicon()
    atoms.calc = HIENetCalculator(str(EXPORTED))
    assert np.isfinite(atoms.get_potential_energy())


# ---------------------------------------------------------------------------------------
# writes are atomic: an export or a checkpoint save that fails midway loses nothing
# ---------------------------------------------------------------------------------------
def half_write_then_fail(real_save):
    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, Path)):
            real_save(obj, f, *args, **kwargs)
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])
            raise OSError("No space left on device (simulated)")
        return real_save(obj, f, *args, **kwargs)
    return save


def test_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    export_model(make_model("tiny", seed=1), path)
    before = path.read_bytes()
    monkeypatch.setattr(torch.jit, "save", half_write_then_fail(torch.jit.save))
    with pytest.raises(OSError, match="simulated"):
        export_model(make_model("tiny", seed=2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"], "no temporary files left"
    DeployedModel(path)


def test_failed_checkpoint_save_keeps_the_previous_file(tmp_path, monkeypatch):
    from hienet.checkpoint import load_model

    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, make_model("tiny", seed=1))
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", half_write_then_fail(torch.save))
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, make_model("tiny", seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]
    load_model(path)
