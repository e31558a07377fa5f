"""The trainer: learning, resuming, fine-tuning, configuration errors and the CLI.

Data: small rattled and strained Si cells labelled with ASE's smooth Lennard-Jones calculator
(a smooth, cheap, exactly known target; no LAMMPS needed). Models: the `tiny` preset.
"""
import csv

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

from hienet.checkpoint import load_checkpoint, load_model
from hienet.train import Trainer, resolve_config
from hienet.train.cli import main as train_main

from conftest import reference_file


def lj_frames(n, seed, symbol="Si"):
    rng = np.random.default_rng(seed)
    calc = LennardJones(sigma=2.1, epsilon=0.3, rc=4.0, smooth=True)
    frames = []
    for _ in range(n):
        atoms = bulk("Si", "diamond", a=rng.uniform(5.3, 5.6), cubic=True)
        eps = rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0, 0.12, atoms.positions.shape)
        atoms.symbols = symbol * len(atoms)
        atoms.calc = calc
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def lj_data(tmp_path_factory):
    import ase.io

    path = tmp_path_factory.mktemp("lj") / "lj.extxyz"
    ase.io.write(path, lj_frames(10, seed=0), format="extxyz")
    return path


def base_config(data, out, **overrides):
    config = {
        "data": {"train": str(data), "validation_fraction": 0.2},
        "model": {"preset": "tiny"},
        "epochs": 4, "batch_size": 2, "output_dir": str(out), "progress": False, "dtype": "float64",
        "optimizer": {"lr": 0.005},
    }
    config.update(overrides)
    return config


def quiet(msg):
    pass


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_falls_on_a_tiny_dataset(lj_data, tmp_path):
    trainer = Trainer(base_config(lj_data, tmp_path, epochs=25, optimizer={"lr": 0.02}), log=quiet)
    before = trainer.evaluate(trainer.train_set, model=trainer.model)
    trainer.fit()
    after = trainer.evaluate(trainer.train_set, model=trainer.model)
    assert after["loss"] < 0.5 * before["loss"], (before["loss"], after["loss"])
    assert after["force_mae"] < 0.7 * before["force_mae"], (before["force_mae"], after["force_mae"])
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(26))  # epoch 0 = the initial model
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert float(rows[-1]["lr"]) == pytest.approx(0.02 * 0.0005)  # cosine ends at lr_min_factor


def test_resume_continues_where_it_stopped(lj_data, tmp_path):
    """Stop after 2 of 4 epochs, resume in a new Trainer: bit-identical to an uninterrupted run."""
    straight = Trainer(base_config(lj_data, tmp_path / "straight"), log=quiet)
    straight.fit()
    interrupted = Trainer(base_config(lj_data, tmp_path / "resumed"), log=quiet)
    interrupted.fit(until_epoch=2)
    assert interrupted.epoch == 2
    resumed = Trainer(base_config(lj_data, tmp_path / "resumed"), resume=True, log=quiet)
    assert resumed.epoch == 2 and resumed.step == 2 * resumed.steps_per_epoch
    assert resumed.ema.num_updates == resumed.step
    assert resumed.scheduler.last_epoch == resumed.step
    resumed.fit()

    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pth")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pth")
    assert state_equal(a["state_dict"], b["state_dict"])  # EMA weights
    assert state_equal(a["train_state"]["model_state_dict"], b["train_state"]["model_state_dict"])
    assert a["train_state"]["global_step"] == b["train_state"]["global_step"] == 4 * resumed.steps_per_epoch
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "straight" / "metrics.csv")) == \
        strip(read_metrics(tmp_path / "resumed" / "metrics.csv"))
    # the saved optimizer moments are the uninterrupted ones too
    sa, sb = a["train_state"]["optimizer"]["state"], b["train_state"]["optimizer"]["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


def test_resume_without_checkpoint_is_a_clear_error(lj_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(base_config(lj_data, tmp_path / "nothing"), resume=True, log=quiet)


def test_checkpoints_load_with_weights_only_and_hold_the_ema(lj_data, tmp_path):
    trainer = Trainer(base_config(lj_data, tmp_path, epochs=2), log=quiet)
    trainer.fit()
    for name in ("checkpoint_last.pth", "checkpoint_best.pth"):
        raw = torch.load(tmp_path / name, weights_only=True)
        assert raw["format"] == "hienet-checkpoint" and raw["species"] == ["Si"]
    last = load_checkpoint(tmp_path / "checkpoint_last.pth")
    with trainer.ema.averaged(trainer.model) as averaged:
        assert state_equal(last["state_dict"], {k: v.cpu() for k, v in averaged.state_dict().items()})
    assert state_equal(last["train_state"]["model_state_dict"], trainer.model.state_dict())
    assert not state_equal(last["state_dict"], last["train_state"]["model_state_dict"])
    model = load_model(tmp_path / "checkpoint_best.pth")
    assert model.config["conv_denominator"] == trainer.model.config["conv_denominator"]


def test_fine_tuning_from_our_checkpoint(lj_data, tmp_path):
    import ase.io

    Trainer(base_config(lj_data, tmp_path / "pre", epochs=2), log=quiet).fit()
    pretrained = load_checkpoint(tmp_path / "pre" / "checkpoint_best.pth")
    new_data = tmp_path / "new.extxyz"
    ase.io.write(new_data, lj_frames(6, seed=7), format="extxyz")
    config = base_config(new_data, tmp_path / "fine", epochs=1, init_checkpoint=str(tmp_path / "pre" / "checkpoint_best.pth"))
    del config["model"]
    tuned = Trainer(config, log=quiet)
    # starts exactly from the checkpoint, keeps its constants (no refit on the new data)
    assert state_equal({k: v.cpu() for k, v in tuned.model.state_dict().items()}, pretrained["state_dict"])
    for key in ("shift", "scale", "conv_denominator", "species", "hidden_irreps"):
        assert tuned.model.config[key] == pretrained["config"][key]
    tuned.fit()
    after = load_checkpoint(tmp_path / "fine" / "checkpoint_last.pth")
    assert not state_equal(after["state_dict"], pretrained["state_dict"])


def test_fine_tuning_from_an_official_checkpoint(tmp_path):
    import ase.io
    from hienet import HIENetCalculator

    official = reference_file("small/checkpoint_like.pth")
    frames = lj_frames(4, seed=0)
    data = tmp_path / "four.extxyz"
    ase.io.write(data, frames, format="extxyz")
    config = base_config(data, tmp_path, epochs=1, batch_size=3, init_checkpoint=str(official))
    del config["model"]
    config["data"]["validation_fraction"] = 0.25
    config["statistics"] = {"shift": "refit"}
    tuned = Trainer(config, log=quiet)
    assert tuned.model.species == ["C", "Cl", "Cu", "Fe", "H", "Na", "O", "Si"]
    assert tuned.model.config["smooth_invariant"] is False  # official behaviour kept
    # same network as the official model; only the Si shift was refitted to the data
    reference = load_model(official)
    ours = {k: v for k, v in tuned.model.state_dict().items() if k != "shift"}
    assert state_equal(ours, {k: v for k, v in reference.state_dict().items() if k != "shift"})
    si = tuned.model.species.index("Si")
    changed = (tuned.model.shift != reference.shift).nonzero().flatten().tolist()
    assert changed == [si]
    # refit = least squares of the residual: it sums to zero over the training structures
    atoms = frames[0]
    calc = HIENetCalculator(tuned.model)
    residual = [a.get_potential_energy() - calc.get_potential_energy(a.copy()) for a in frames]
    train_idx = [i for i in range(len(frames)) if i not in tuned.validation_indices]
    assert len(train_idx) == 3
    assert abs(sum(residual[i] for i in train_idx)) < 1e-6
    # and otherwise predicts exactly what the official model predicts (shift difference aside)
    e_official = HIENetCalculator(reference).get_potential_energy(atoms.copy())
    e_tuned = calc.get_potential_energy(atoms.copy())
    shift_delta = float(tuned.model.shift[si] - reference.shift[si])
    assert e_tuned - e_official == pytest.approx(len(atoms) * shift_delta, abs=1e-8)
    summary = tuned.fit()
    assert np.isfinite(summary["best_value"])
    saved = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)  # our format now
    assert saved["species"] == tuned.model.species


def test_fine_tuning_refuses_elements_outside_the_checkpoint(tmp_path):
    import ase.io

    data = tmp_path / "ge.extxyz"
    ase.io.write(data, lj_frames(3, seed=1, symbol="Ge"), format="extxyz")
    config = base_config(data, tmp_path / "run", init_checkpoint=str(reference_file("small/checkpoint_like.pth")))
    del config["model"]
    with pytest.raises(ValueError, match="Ge not in"):
        Trainer(config, log=quiet)


@pytest.mark.parametrize("bad, match", [
    ({"loss": {"huber_delt": 0.1}}, "loss.huber_delt"),
    ({"optimiser": {}}, "optimiser"),
    ({"loss": {"stress_unit": "atm"}}, "stress_unit"),
    ({"statistics": {"scale": "fitted"}}, "statistics.scale"),
    ({"epochs": 0}, "epochs"),
])
def test_config_errors_name_the_key(bad, match):
    with pytest.raises((KeyError, ValueError), match=match):
        resolve_config({"data": {"train": "x.extxyz"}, **bad})


def test_model_section_with_init_checkpoint_is_refused():
    with pytest.raises(ValueError, match="remove the model section"):
        resolve_config({"data": {"train": "x"}, "init_checkpoint": "a.pth", "model": {"preset": "tiny"}})


def test_cli_trains_from_yaml(lj_data, tmp_path, capsys):
    import yaml

    config = base_config(lj_data, tmp_path / "cli", epochs=1)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert train_main([str(path), "--no-progress"]) == 0
    assert {p.name for p in (tmp_path / "cli").iterdir()} >= {
        "checkpoint_last.pth", "checkpoint_best.pth", "metrics.csv", "train_config.yaml"}
    err = capsys.readouterr().err
    assert "hienet-train" in err and "git" in err and "dtype float64" in err
    assert train_main([str(path), "--no-progress", "--epochs", "2", "--resume"]) == 0
    assert [int(r["epoch"]) for r in read_metrics(tmp_path / "cli" / "metrics.csv")] == [0, 1, 2]
    assert train_main(["--print-defaults"]) == 0
    assert "huber_delta" in capsys.readouterr().out
