"""Data-parallel training (torchrun and srun, gloo on the CPU) against single-process training.

The reference is one process training on the same global batches: two ranks must give the same
weights, EMA weights and logged metrics (float64, relative 1e-6; an unscaled gradient is off by
1e-3 in the weights and by 2x in the logged gradient norm). The training set has 9 structures
and batch_size 2, so the last batch of each epoch leaves one rank without structures. Resuming
crosses rank counts both ways; a killed rank, and a NaN loss on one rank, end the run with an
error and leave the last complete checkpoint.
"""
import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml

from hienet.checkpoint import load_checkpoint
from hienet.train import Trainer
from hienet.train.cli import main as train_main
from hienet.train.dataset import split_indices
from hienet.train.distributed import Processes, detect, first_host, rendezvous_environment
from hienet.train.sampler import GlobalBatchSampler, contiguous_block, epoch_order

from conftest import REPO, reference_file
from test_train import lj_frames, quiet

BIN = Path(sys.executable).parent
TIMEOUT = 240  # a hang fails the test instead of the CI job


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "lj11.extxyz"
    ase.io.write(path, lj_frames(11, seed=0), format="extxyz")
    return path


def config(data, out, **overrides):
    cfg = {"data": {"train": str(data), "validation_fraction": 0.2}, "model": {"preset": "tiny"},
           "epochs": 2, "batch_size": 2, "output_dir": str(out), "progress": False, "dtype": "float64",
           "optimizer": {"lr": 0.005}, "num_threads": 1}
    cfg.update(overrides)
    return cfg


def write_config(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return path


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in
           ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def torchrun(*args, env=None):
    """`torchrun --nproc_per_node 2 ARGS` (a script, or --no-python and a command)."""
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env or clean_env(), cwd=REPO)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relative(a, b):
    if b.numel() == 0:
        return 0.0 if a.shape == b.shape else float("inf")
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


def assert_same_run(out, ref_out, tol=1e-6):
    """Weights, EMA weights and every metrics.csv value (but the times) within `tol` relative."""
    a, b = load_checkpoint(Path(out) / "checkpoint_last.pth"), load_checkpoint(Path(ref_out) / "checkpoint_last.pth")
    assert a["train_state"]["global_step"] == b["train_state"]["global_step"]
    for key in ("state_dict",):  # the EMA weights are the checkpoint's weights
        for name, ref in b[key].items():
            if ref.is_floating_point():
                assert relative(a[key][name], ref) <= tol, (key, name)
    for name, ref in b["train_state"]["model_state_dict"].items():
        if ref.is_floating_point():
            assert relative(a["train_state"]["model_state_dict"][name], ref) <= tol, ("weights", name)
    rows, ref_rows = read_metrics(Path(out) / "metrics.csv"), read_metrics(Path(ref_out) / "metrics.csv")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows]
    for row, ref_row in zip(rows, ref_rows):
        for column, value in ref_row.items():
            if column == "time_s" or value == "":
                continue
            assert float(row[column]) == pytest.approx(float(value), rel=tol, abs=1e-300), (row["epoch"], column)
    assert ref_rows[-1]["train_grad_norm"] != ""


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One process, 2 epochs, data in memory; and the same run stopped after epoch 1."""
    out = tmp_path_factory.mktemp("reference")
    Trainer(config(data, out), log=quiet).fit()
    return out


# ------------------------------------------------------------------------------------------
# processes, sampling
# ------------------------------------------------------------------------------------------
def test_processes_from_torchrun_and_slurm_environments():
    assert detect({}) == Processes()
    assert detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Processes(3, 8, 1, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
             "SLURM_STEP_NODELIST": "gpu[007-008,012],cpu3"}
    procs = detect(slurm)
    assert procs == Processes(5, 8, 1, "slurm")
    env = rendezvous_environment(procs, slurm)
    assert env["MASTER_ADDR"] == "gpu007" and env["MASTER_PORT"] == str(15000 + 123456 % 20000)
    assert env["RANK"] == "5" and env["WORLD_SIZE"] == "8"
    assert rendezvous_environment(procs, {**slurm, "MASTER_ADDR": "head", "MASTER_PORT": "29500"}) == \
        {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}
    # a batch script of a many-task job (no srun step) is one process, not rank 0 of 8
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "1"}) == Processes()
    assert first_host("node1") == "node1" and first_host("a[1-4]-ib,b2") == "a1-ib"
    assert first_host("rack[2-3]n[09,11]") == "rack2n09"
    with pytest.raises(ValueError, match="rank 4 is not within the world size 4"):
        detect({"RANK": "4", "WORLD_SIZE": "4"})


@pytest.mark.parametrize("sizes", [None, "skewed"])
def test_ranks_share_every_single_process_batch(sizes):
    n, batch_size, world = 23, 6, 3
    if sizes == "skewed":  # 2-atom cells and 200-atom slabs
        sizes = np.where(np.arange(n) % 4 == 0, 200, 2)
    for epoch in (1, 2):
        single = GlobalBatchSampler(n, batch_size, seed=5)
        single.set_epoch(epoch)
        ranks = []
        for rank in range(world):
            sampler = GlobalBatchSampler(n, batch_size, seed=5, rank=rank, world_size=world, sizes=sizes)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        steps = list(single)
        assert all(len(parts) == len(steps) == 4 for parts in ranks)  # the same number of steps
        for k, batch in enumerate(steps):  # step k of the ranks = step k of one process
            assert sorted(sum((parts[k] for parts in ranks), [])) == sorted(batch)
            if sizes is not None:  # no rank holds two slabs while another holds none
                slabs = [int(np.sum(sizes[parts[k]] == 200)) for parts in ranks]
                assert max(slabs) - min(slabs) <= 1, slabs
        if sizes is None:
            assert [len(parts[-1]) for parts in ranks] == [2, 2, 1]
        assert sorted(sum(steps, [])) == list(range(n))
        assert steps[0] == epoch_order(n, 5, epoch)[:batch_size].tolist()
    tiny = GlobalBatchSampler(3, 2, seed=0, rank=1, world_size=2)
    assert [len(part) for part in tiny] == [1, 0]  # the rank joins the last step with nothing
    assert sorted(sum((list(contiguous_block(10, r, 4)) for r in range(4)), [])) == list(range(10))


def test_batch_size_not_divisible_by_the_world_size_is_named(data, tmp_path, monkeypatch, capsys):
    path = write_config(tmp_path / "train.yaml", config(data, tmp_path / "out", batch_size=3))
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)  # rank 0 of torchrun: the check comes before the rendezvous
    assert train_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "batch_size 3 is not divisible by the number of processes 2" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------
# two processes against one
# ------------------------------------------------------------------------------------------
def test_two_ranks_train_like_one_process(data, reference, tmp_path):
    """torchrun, 2 ranks, data streamed from disk with DataLoader workers and a small cache."""
    cfg = config(data, tmp_path / "two")
    cfg["data"].update(stream=True, cache_size=3)
    run = torchrun("--no-python", BIN / "hienet-train", write_config(tmp_path / "train.yaml", cfg), "--num-workers", 1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data parallel: 2 processes (torchrun, gloo), global batch 2 = 1 per process" in run.stderr
    assert "(streamed from disk, 1 worker(s) per process)" in run.stderr
    assert run.stderr.count("epoch 2/2:") == 1  # rank 1 is silent
    assert_same_run(tmp_path / "two", reference)
    saved = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert saved == ["checkpoint_best.pth", "checkpoint_last.pth", "metrics.csv", "train_config.yaml",
                     "training_curve.png"]


def test_a_killed_rank_ends_the_run_and_one_rank_resumes_it(data, reference, tmp_path):
    """Rank 1 is SIGKILLed in epoch 2: torchrun exits within seconds naming it, the checkpoint
    is epoch 1's; one process resumes from it and ends where the uninterrupted run ended."""
    out = tmp_path / "run"
    path = write_config(tmp_path / "train.yaml", config(data, out))
    stamp = tmp_path / "killed_at"
    run = torchrun(REPO / "tests" / "train_fault.py", path,
                   env=clean_env(FAULT="kill", FAULT_RANK="1", FAULT_STEP="8", FAULT_STAMP=str(stamp)))
    elapsed = time.time() - float(stamp.read_text())
    assert run.returncode != 0
    report = run.stderr.split("Root Cause")[-1]
    assert "rank      : 1 (local_rank: 1)" in report and "Signal 9 (SIGKILL)" in report, run.stderr[-3000:]
    assert elapsed < 20, elapsed  # seconds after the kill, not the collective timeout (600 s)
    assert load_checkpoint(out / "checkpoint_last.pth")["train_state"]["epoch"] == 1
    assert [int(r["epoch"]) for r in read_metrics(out / "metrics.csv")] == [0, 1]
    resumed = Trainer(config(data, out), resume=True, log=quiet)
    assert resumed.epoch == 1 and resumed.step == 5
    resumed.fit()
    assert_same_run(out, reference)


def test_two_ranks_under_srun_resume_a_one_process_run(data, reference, tmp_path):
    """One process trains epoch 1; two processes started as srun starts them (SLURM_* variables,
    no MASTER_ADDR/PORT) resume it and end where the uninterrupted run ended."""
    out = tmp_path / "run"
    Trainer(config(data, out), log=quiet).fit(until_epoch=1)
    path = write_config(tmp_path / "train.yaml", config(data, out))
    port = free_port()
    while not 15000 <= port < 35000:
        port = free_port()
    procs = [subprocess.Popen([str(BIN / "hienet-train"), str(path), "--resume"], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=clean_env(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_STEP_NUM_TASKS="2",
                                            SLURM_NTASKS="2", SLURM_STEP_NODELIST="localhost",
                                            SLURM_JOB_ID=str(port - 15000)))
             for rank in range(2)]
    results = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert "data parallel: 2 processes (slurm, gloo)" in results[0][1]
    assert results[1][1].strip() == ""  # rank 1 is silent
    assert_same_run(out, reference)


def test_a_nan_loss_on_one_rank_stops_every_rank_before_saving(data, tmp_path):
    out = tmp_path / "run"
    path = write_config(tmp_path / "train.yaml", config(data, out))
    run = torchrun(REPO / "tests" / "train_fault.py", path, env=clean_env(FAULT="nan", FAULT_RANK="1", FAULT_STEP="7"))
    assert run.returncode != 0
    # rank 0 names the structure of rank 1's part of step 7 (epoch 2, second batch)
    sampler = GlobalBatchSampler(9, 2, seed=0, rank=1, world_size=2, sizes=np.full(9, 8))
    sampler.set_epoch(2)
    position = list(sampler)[1][0]
    train_idx, _ = split_indices(11, 0.2, 0)
    assert (f"hienet-train: error: training stopped at epoch 2, step 7: the loss is nan (batch: "
            f"{data} structure {train_idx[position]})") in run.stderr, run.stderr[-3000:]
    assert "(rank 1)" not in run.stderr  # reported once
    assert load_checkpoint(out / "checkpoint_last.pth")["train_state"]["epoch"] == 1
    assert [int(r["epoch"]) for r in read_metrics(out / "metrics.csv")] == [0, 1]


def test_fine_tuning_an_official_checkpoint_on_two_ranks(data, tmp_path):
    """--init-checkpoint with the shift refitted on the data: the refit pass is sharded too."""
    official = reference_file("small/checkpoint_like.pth")
    cfg = config(data, tmp_path / "one", epochs=1, batch_size=4, init_checkpoint=str(official),
                 statistics={"shift": "refit"})
    del cfg["model"]
    Trainer(cfg, log=quiet).fit()
    cfg["output_dir"] = str(tmp_path / "two")
    run = torchrun("--no-python", BIN / "hienet-train", write_config(tmp_path / "train.yaml", cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"fine-tuning from {official}" in run.stderr
    one, two = (load_checkpoint(tmp_path / d / "checkpoint_last.pth") for d in ("one", "two"))
    assert np.allclose(one["config"]["shift"], two["config"]["shift"], rtol=1e-12, atol=0)
    assert_same_run(tmp_path / "two", tmp_path / "one")
