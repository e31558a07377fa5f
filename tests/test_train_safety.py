"""The trainer never turns bad data into NaN weights and never loses a good checkpoint.

* a NaN/inf label or overlapping atoms: an error naming the structure, the field and the atom;
* a non-finite loss, gradient or weight: training stops with an error before saving, and the
  previous epoch's checkpoint_last.pth stays as it was;
* checkpoints are written atomically: a save that fails midway, or a process killed while
  saving, leaves the previous checkpoint loadable.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import ase.io
import numpy as np
import pytest
import torch

from hienet.checkpoint import load_checkpoint, load_model
from hienet.train import Trainer, TrainingDiverged
from hienet.train.cli import main as train_main

from test_train import base_config, lj_frames, quiet


def write_frames(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return path


@pytest.fixture(scope="module")
def frames():
    frames = lj_frames(10, seed=0)
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = f"rattled-{k}"
    return frames


def with_label(frames, k, field, value, atom=1):
    """Copies of `frames` with one label of structure k replaced."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for i, atoms in enumerate(frames):
        labels = {key: np.array(v, copy=True) if key != "energy" else v for key, v in atoms.calc.results.items()}
        copy = atoms.copy()
        if i == k:
            if field == "energy":
                labels["energy"] = value
            elif field == "forces":
                labels["forces"][atom, 2] = value
            else:
                labels["stress"][3] = value
        copy.calc = SinglePointCalculator(copy, **labels)
        out.append(copy)
    return out


@pytest.mark.parametrize("field, value, message", [
    ("forces", np.nan, r"structure 3 \(config_type=rattled-3\): the force label of atom 1 \(Si\) is \[.*nan\]"),
    ("energy", np.inf, r"structure 3 \(config_type=rattled-3\): the energy label is inf"),
    ("stress", np.nan, r"structure 3 \(config_type=rattled-3\): the stress label is not finite"),
])
def test_non_finite_label_names_structure_and_field(frames, tmp_path, field, value, message):
    data = write_frames(tmp_path / "bad.extxyz", with_label(frames, 3, field, value))
    with pytest.raises(ValueError, match=f"{data} " + message):
        Trainer(base_config(data, tmp_path / "out"), log=quiet)


def test_cli_reports_a_nan_force_and_writes_no_checkpoint(frames, tmp_path, capsys):
    import yaml

    data = write_frames(tmp_path / "bad.extxyz", with_label(frames, 6, "forces", np.nan, atom=4))
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(base_config(data, tmp_path / "out")))
    assert train_main([str(config)]) == 2
    err = capsys.readouterr().err
    assert f"hienet-train: error: {data} structure 6 (config_type=rattled-6): the force label of atom 4 (Si)" in err
    assert not (tmp_path / "out" / "checkpoint_last.pth").exists()


def test_overlapping_atoms_in_training_data_are_named(frames, tmp_path):
    bad = [a.copy() for a in frames]
    for a, src in zip(bad, frames):
        a.calc = src.calc
    bad[2].positions[5] = bad[2].positions[1]
    data = write_frames(tmp_path / "overlap.extxyz", bad)
    with pytest.raises(ValueError, match=fr"{data} structure 2 \(config_type=rattled-2\): atom 1 \(Si\) and "
                                         r"atom 5 \(Si\) are 0 Å apart"):
        Trainer(base_config(data, tmp_path / "out"), log=quiet)


# ---------------------------------------------------------------------------------------
# divergence during training
# ---------------------------------------------------------------------------------------
@pytest.fixture()
def data(frames, tmp_path):
    return write_frames(tmp_path / "good.extxyz", frames)


def trained_one_epoch(data, out):
    trainer = Trainer(base_config(data, out, epochs=3), log=quiet)
    trainer.fit(until_epoch=1)
    return trainer, (out / "checkpoint_last.pth").read_bytes(), (out / "checkpoint_best.pth").read_bytes()


def assert_epoch_one_kept(out, last, best):
    assert (out / "checkpoint_last.pth").read_bytes() == last
    assert (out / "checkpoint_best.pth").read_bytes() == best
    ckpt = load_checkpoint(out / "checkpoint_last.pth")
    assert ckpt["train_state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "no temporary files left"


def test_non_finite_loss_stops_without_overwriting(data, tmp_path):
    out = tmp_path / "out"
    trainer, last, best = trained_one_epoch(data, out)
    calls = {"n": 0}
    loss_fn = trainer.loss_fn

    def nan_on_second_batch(pred, batch):  # 2nd call: the 2nd batch of epoch 2 (validation computes
        total, parts = loss_fn(pred, batch)  # its metrics without the training loss function)
        calls["n"] += 1
        return (total * float("nan") if calls["n"] == 2 else total), parts

    trainer.loss_fn = nan_on_second_batch
    with pytest.raises(TrainingDiverged, match=r"training stopped at epoch 2, step 6: the loss is nan \(batch: "
                                               fr"{data} structure \d+ \(config_type=rattled-\d+\)"):
        trainer.fit()
    assert_epoch_one_kept(out, last, best)
    assert Trainer(base_config(data, out, epochs=3), resume=True, log=quiet).epoch == 1  # resumable


def test_non_finite_gradient_stops_without_overwriting(data, tmp_path):
    out = tmp_path / "out"
    trainer, last, best = trained_one_epoch(data, out)
    original = trainer._predict

    def nan_gradient(model, batch, create_graph):
        result = original(model, batch, create_graph)
        if create_graph:  # training step: a loss term whose gradient is NaN but value finite
            p = next(model.parameters())
            result = dict(result)
            result["energy"] = result["energy"] + 0.0 * torch.sqrt(p.reshape(-1)[0] * 0.0 - 1.0).nan_to_num(0.0)
        return result

    trainer._predict = nan_gradient
    with pytest.raises(TrainingDiverged, match="training stopped at epoch 2, step 5: the gradient norm is nan"):
        trainer.fit()
    assert_epoch_one_kept(out, last, best)


def test_non_finite_weights_are_never_saved(data, tmp_path):
    out = tmp_path / "out"
    trainer, last, best = trained_one_epoch(data, out)
    step = trainer.optimizer.step

    def poisoning_step(*args, **kwargs):  # the last step of epoch 2: no loss sees it
        result = step(*args, **kwargs)
        if trainer.step == 2 * trainer.steps_per_epoch - 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("inf"))
        return result

    trainer.optimizer.step = poisoning_step
    with pytest.raises(TrainingDiverged, match=r"training stopped after epoch 2: weight \S+ is not finite; "
                                               f"{out / 'checkpoint_last.pth'} keeps epoch 1"):
        trainer.fit()
    assert_epoch_one_kept(out, last, best)


# ---------------------------------------------------------------------------------------
# interrupted saves
# ---------------------------------------------------------------------------------------
def test_save_failing_midway_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    trainer, last, best = trained_one_epoch(data, out)
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        size = os.path.getsize(f)
        with open(f, "r+b") as handle:
            handle.truncate(size // 2)
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        trainer.fit()
    monkeypatch.undo()
    assert_epoch_one_kept(out, last, best)
    load_model(out / "checkpoint_last.pth")


KILLED_SAVER = textwrap.dedent('''
    import sys
    import torch
    from hienet.checkpoint import save_checkpoint
    sys.path.insert(0, sys.argv[2])
    from conftest import make_model

    model = make_model("tiny")
    big = {"padding": torch.zeros(40_000_000)}   # 160 MB: each save takes a while
    save_checkpoint(sys.argv[1], model, {"epoch": 0, **big})
    print("ready", flush=True)
    epoch = 0
    while True:
        epoch += 1
        save_checkpoint(sys.argv[1], model, {"epoch": epoch, **big})
''')


def test_checkpoint_survives_a_kill_during_saving(tmp_path):
    """SIGKILL a process that saves checkpoints in a loop until a kill lands mid-save (a
    temporary file is left behind); the checkpoint then still loads completely."""
    path = tmp_path / "checkpoint_last.pth"
    tests = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(0)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(path), tests],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.2, 1.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        ckpt = load_checkpoint(path)                 # complete, whatever the moment of the kill
        assert ckpt["train_state"]["padding"].shape == (40_000_000,)
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        for p in leftovers:                          # a kill mid-save leaves its temporary file
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
        if leftovers:
            return
    pytest.fail("no kill landed during a save in 6 attempts: the test did not test anything")
