"""Bad input gives a clear exception that names the culprit."""
import pickle

import pytest
import torch
from ase import Atoms

from hienet.calculator import HIENetCalculator
from hienet.checkpoint import load_model, save_checkpoint
from hienet.model import make_config
from hienet.official import load_official_checkpoint

from conftest import make_model, reference_file


def test_element_outside_type_map():
    calc = HIENetCalculator(make_model("tiny"))
    atoms = Atoms("SiAuPt", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]], cell=[8, 8, 8], pbc=True)
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"Au, Pt not in .*knows C, Cl, Cu"):
        atoms.get_potential_energy()


def test_unknown_config_key_is_named():
    with pytest.raises(KeyError, match="hiden_irreps"):
        make_config("small", species=["Si"], hiden_irreps=["8x0e"])


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="Xx"):
        make_config("small", species=["Si", "Xx"])
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        make_config("huge", species=["Si"])
    with pytest.raises(ValueError, match="shift"):
        make_config("small", species=["Si", "O"], shift=[1.0, 2.0, 3.0])


def test_missing_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="corrupt.pth"):
        load_model(corrupt)
    good = tmp_path / "good.pth"
    save_checkpoint(good, make_model("tiny"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated.pth"):
        load_model(truncated)


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    model = make_model("tiny", seed=5)
    path = tmp_path / "m.pth"
    save_checkpoint(path, model)
    torch.load(path, weights_only=True)  # plain safe loading works
    again = load_model(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_official_loader_refuses_foreign_globals(tmp_path):
    ckpt = torch.load(reference_file("small/checkpoint_like.pth"), weights_only=False)
    ckpt["config"]["payload"] = Evil()
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"evil.pth.*global 'print'"):
        load_official_checkpoint(path)
    with pytest.raises(ValueError, match="evil.pth"):
        load_model(path)


def test_official_checkpoint_needs_no_unsafe_loading():
    with pytest.raises(pickle.UnpicklingError):
        torch.load(reference_file("small/checkpoint_like.pth"), weights_only=True)
    ckpt = load_official_checkpoint(reference_file("small/checkpoint_like.pth"))
    assert ckpt["config"]["_number_of_species"] == 8
