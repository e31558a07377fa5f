"""The HIENet trainer: data → statistics → model → AdamW/cosine/EMA loop → checkpoints.

Stages of `Trainer.__init__`, in order:

1. config      defaults + the user's config (`hienet.train.config`), processes (one, or the
               ranks of torchrun/srun: `hienet.train.distributed`), seeds, device, dtype
2. model spec  resume: the last checkpoint; fine-tune: our or an official checkpoint;
               new: `make_config(preset, **model)` with species from the data
3. data        graphs at the model's cutoff, in memory or streamed from disk
               (`hienet.train.streaming`); seeded train/validation split
4. statistics  per-species shift (least squares), scale (force RMS), conv denominator
               (average neighbour count) from the training split — new models only; one
               streaming pass sharded over ranks and workers, the same numbers on any number
5. model       built under `torch.manual_seed(seed)`, moved to device/dtype, wrapped in
               DistributedDataParallel when there are several ranks
6. optimiser   AdamW, cosine schedule with linear warm-up (per batch), EMA of the weights

`fit()` then runs epochs: shuffle (seeded by seed and epoch), forces and stress from one
backward pass of the energy over the edge vectors (`hienet.model.forces.evaluate` with
`create_graph=True`), weighted Huber loss, gradient clipping, optimiser/scheduler/EMA
steps; the EMA weights are validated and saved. Files in `output_dir`:

    checkpoint_last.pth   EMA weights + train_state (raw weights, optimiser, scheduler, EMA
                          counter, epoch, RNG states, split, config) for `resume`
    checkpoint_best.pth   EMA weights of the best validation epoch
    metrics.csv           one row per epoch (epoch 0 = the initial model)
    training_curve.png    loss and MAEs per epoch, drawn from metrics.csv at the end of fit()
    train_config.yaml     the resolved config

Resuming restarts from the end of the last completed epoch and gives the same weights as
an uninterrupted run (bit for bit on CPU with the same number of processes).

Data parallel (several ranks): `batch_size` is the global batch; each rank takes its part of
every single-process batch (`hienet.train.sampler`), its loss terms are divided by the
component counts of the global batch (`hienet.train.loss`), and DistributedDataParallel's
gradient average is undone by scaling the loss by the world size, so the all-reduced gradient
is the single-process gradient of the global batch. Clipping, optimiser, schedule and EMA
then do the same arithmetic on every rank; the loss of each step and the metrics of each
epoch are summed over ranks. Only rank 0 writes files and logs.
"""
import csv
import functools
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from .. import __version__
from ..checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ..graph import keys as K
from ..model import HIENet, build_model, make_config
from ..model.forces import evaluate
from . import distributed
from .config import dump_config, resolve_config
from .dataset import HAS_STRESS, INDEX, GraphDataset, collate_or_none, read_structures, split_indices, summary_of, to_device
from .ema import ExponentialMovingAverage
from .loss import LOSS_NORM, ErrorMetrics, WeightedHuberLoss
from .sampler import GlobalBatchSampler, check_batch_size, contiguous_block, in_batches, num_batches
from .schedule import cosine_warmup
from .statistics import ChunkedStatistics, Summary, chunk_positions, combine, num_chunks

LAST = "checkpoint_last.pth"
BEST = "checkpoint_best.pth"
METRICS = "metrics.csv"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# metrics.csv columns: (column, metrics-dict key) for train_ and val_ prefixes
_METRIC_COLUMNS = [
    ("loss", "loss"), ("energy_loss", "energy_loss"), ("force_loss", "force_loss"),
    ("stress_loss", "stress_loss"),
    ("E_mae_meV_per_atom", "energy_mae"), ("E_rmse_meV_per_atom", "energy_rmse"),
    ("F_mae_meV_per_A", "force_mae"), ("F_rmse_meV_per_A", "force_rmse"),
    ("S_mae_GPa", "stress_mae"), ("S_rmse_GPa", "stress_rmse"),
]
CSV_COLUMNS = (["epoch", "step", "lr", "time_s"]
               + [f"train_{c}" for c, _ in _METRIC_COLUMNS] + [f"val_{c}" for c, _ in _METRIC_COLUMNS]
               # mean over the epoch's steps of the global gradient norm before clipping
               + ["train_grad_norm"])


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)  # a snapshot, not a view of live tensors
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def rng_state() -> Dict[str, Any]:
    """Torch (CPU and CUDA), numpy and python RNG states, in types `weights_only` loading accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_model_constants(model: HIENet, shift=None, scale=None, conv_denominator=None) -> None:
    """Set shift / scale / conv denominator in the buffers and in `model.config` (kept in sync)."""
    n = len(model.species)
    with torch.no_grad():
        if shift is not None:
            shift = [float(shift)] * n if np.isscalar(shift) else [float(s) for s in shift]
            model.shift.copy_(torch.tensor(shift, dtype=model.shift.dtype))
            model.config["shift"] = shift
        if scale is not None:
            scale = [float(scale)] * n if np.isscalar(scale) else [float(s) for s in scale]
            model.scale.copy_(torch.tensor(scale, dtype=model.scale.dtype))
            model.config["scale"] = scale
        if conv_denominator is not None:
            for block in model.interactions:
                block.denominator.fill_(float(conv_denominator))
            model.config["conv_denominator"] = float(conv_denominator)


_IO_OPTIONS = {"data": ("stream", "cache_size")}  # how data are read, not what is trained


def _without_io_options(cfg: Dict[str, Any], key: str):
    value = cfg.get(key)
    if key in _IO_OPTIONS and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _IO_OPTIONS[key]}
    return value


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient or weight: training stops before anything is saved."""


class _Summaries(torch.utils.data.Dataset):
    """(position, Summary) of each structure of a data set: what DataLoader workers send back in
    the statistics pass instead of whole graphs."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return i, summary_of(self.dataset[i], len(self.dataset.species))


class Trainer:
    """See the module docstring. `log` receives one-line messages (default: stderr; rank 0 only)."""

    def __init__(self, config: Dict[str, Any], resume: bool = False,
                 log: Optional[Callable[[str], None]] = None):
        # 1. config ---------------------------------------------------------------------------
        self.cfg = cfg = resolve_config(config)
        self.processes = procs = distributed.detect()
        check_batch_size(cfg["batch_size"], procs.world_size)  # before waiting for the other ranks
        log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.log = log if procs.is_main else (lambda msg: None)
        self.out_dir = Path(cfg["output_dir"])
        self.device = distributed.device_for(procs, cfg["device"])
        self.dtype = _DTYPES[cfg["dtype"]]
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        if cfg["deterministic"] and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        distributed.start(procs, self.device, cfg["collective_timeout_s"])
        seed = int(cfg["seed"])
        seed_everything(seed)
        data_cfg = cfg["data"]
        label_keys = {k: data_cfg[k] for k in ("energy_key", "forces_key", "stress_key")}
        self.stream = bool(data_cfg["stream"])
        self.num_workers = cfg["num_workers"] if cfg["num_workers"] is not None else (2 if self.stream else 0)

        # 2. model spec ---------------------------------------------------------------------------
        resume_state = None
        if resume:
            last = self.out_dir / LAST
            if not last.is_file():
                raise FileNotFoundError(f"cannot resume: {last} does not exist (start without --resume)")
            ckpt = load_checkpoint(last)
            if "train_state" not in ckpt:
                raise ValueError(f"cannot resume from {last}: it holds no train_state")
            resume_state = ckpt["train_state"]
            self._warn_config_changes(resume_state.get("train_config", {}))
            model = model_from_checkpoint(ckpt, source=str(last))
            ema_weights = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(resume_state["model_state_dict"])
            origin = f"resumed from {last} (epoch {resume_state['epoch']})"
        elif cfg["init_checkpoint"] is not None:
            from ..checkpoint import load_model

            model = load_model(cfg["init_checkpoint"], dtype=self.dtype).train()
            origin = f"fine-tuning from {cfg['init_checkpoint']}"
        else:
            model = None
            model_section = dict(cfg["model"])
            preset = model_section.pop("preset", None)
        need_species = model is None and "species" not in model_section
        if self.stream:
            train_frames, file_species = self._index(data_cfg["train"], want_species=True)
        else:
            train_frames = read_structures(data_cfg["train"])
            file_species = {s for atoms in train_frames for s in atoms.get_chemical_symbols()} if need_species else None
        if model is None:
            if need_species:
                from ase.data import atomic_numbers

                model_section["species"] = sorted(file_species, key=atomic_numbers.__getitem__)
            spec = make_config(preset, **model_section)
            species, cutoff = spec["species"], spec["cutoff"]
            origin = f"new model (preset {preset!r})"
        else:
            species, cutoff = list(model.species), float(model.cutoff)

        # 3. data ---------------------------------------------------------------------------------
        def dataset(path, frames, species_found):
            if not self.stream:
                return GraphDataset(frames, species, cutoff, source=str(path), **label_keys)
            from ..ase_convert import species_indices
            from .streaming import StreamedGraphDataset

            species_indices(sorted(species_found), species, f"the model's species (needed by {path})")
            return StreamedGraphDataset(frames, range(len(frames)), species, cutoff, str(path),
                                        cache_size=data_cfg["cache_size"], **label_keys)

        full = dataset(data_cfg["train"], train_frames, file_species)
        if data_cfg["validation"] is not None:
            self.train_set = full
            if self.stream:
                val_frames, val_species = self._index(data_cfg["validation"], want_species=True)
            else:
                val_frames, val_species = read_structures(data_cfg["validation"]), None
            self.val_set = dataset(data_cfg["validation"], val_frames, val_species)
            self.validation_indices: List[int] = []
        else:
            train_idx, val_idx = split_indices(len(full), float(data_cfg["validation_fraction"]), seed)
            self.train_set, self.val_set = full.subset(train_idx), full.subset(val_idx)
            self.validation_indices = val_idx
        if resume_state is not None and resume_state.get("validation_indices") != self.validation_indices:
            raise ValueError("cannot resume: the train/validation split differs from the checkpoint's "
                             "(data, seed or validation_fraction changed)")
        self.metric_loss = WeightedHuberLoss(**cfg["loss"])  # metrics and loss normalisation counts

        # 4. statistics and 5. model ------------------------------------------------------------
        self.statistics = self._statistics(model, resuming=resume_state is not None)
        new_model = model is None
        if new_model:
            spec.update(self.statistics)
            torch.manual_seed(seed)
            model = build_model(spec)
        self.model = model.to(device=self.device, dtype=self.dtype).train()
        if new_model:  # the buffers were made in torch's default dtype: set them at full precision
            set_model_constants(self.model, **self.statistics)
        self.trained = self.model  # what the training step calls: the model, or its DDP wrapper
        if procs.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.trained = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the buffers (constants) are the same everywhere and not trained. Not static_graph=True:
                # with the force loss's double backward it reduced incomplete gradients (measured:
                # weights off by 1e-3 after 10 steps against one process)
                forward_sync_buffers=False)

        # 6. optimiser, schedule, EMA ---------------------------------------------------------------
        opt_cfg, sched_cfg = cfg["optimizer"], cfg["scheduler"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(opt_cfg["lr"]),
                                           weight_decay=float(opt_cfg["weight_decay"]),
                                           betas=tuple(opt_cfg["betas"]),
                                           foreach=True)  # torch's CPU default loops over tensors: 2x slower here
        self.steps_per_epoch = num_batches(len(self.train_set), cfg["batch_size"])
        self.total_steps = self.steps_per_epoch * cfg["epochs"]
        self.scheduler = cosine_warmup(self.optimizer, self.total_steps, **sched_cfg)
        self.ema = ExponentialMovingAverage(self.model, cfg["ema_decay"], cfg["ema_warmup"])
        self.loss_fn = WeightedHuberLoss(**cfg["loss"])
        self.epoch, self.step = 0, 0
        self.best_value, self.best_epoch = math.inf, -1
        if resume_state is not None:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            self.scheduler.load_state_dict(resume_state["scheduler"])
            self.ema.load_state_dict({**resume_state["ema"],
                                      "shadow": {name: ema_weights[name] for name in self.ema.shadow}})
            self.epoch, self.step = int(resume_state["epoch"]), int(resume_state["global_step"])
            self.best_value = float(resume_state["best_value"])
            self.best_epoch = int(resume_state["best_epoch"])
            set_rng_state(resume_state["rng"])
        self.resumed = resume_state is not None
        self.train_sampler = GlobalBatchSampler(len(self.train_set), cfg["batch_size"], seed, procs.rank,
                                                procs.world_size, sizes=self.train_set.num_atoms())
        self._loaders: Dict[int, torch.utils.data.DataLoader] = {}
        self._padding = None
        self._provenance(origin)

    # ------------------------------------------------------------------------------------------
    def _index(self, path, want_species: bool):
        """(frames, element symbols) of a streamed file: indexed on rank 0, sent to the others."""
        from .streaming import index_file

        result, error = None, None
        if self.processes.is_main:
            try:
                result = index_file(path, want_species)
            except (ValueError, FileNotFoundError) as err:
                error = err
        result, error = distributed.broadcast((result, error))
        if error is not None:
            raise error
        return result

    def _loader(self, dataset, batches, persistent: bool = False) -> torch.utils.data.DataLoader:
        """Collated CPU batches of `dataset` for the lists of positions `batches` (None: empty part)."""
        workers = self.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=workers, persistent_workers=persistent and workers > 0,
            collate_fn=functools.partial(collate_or_none, dtype=self.dtype),
            pin_memory=self.device.type == "cuda")

    def _eval_loader(self, dataset):
        """This rank's block of `dataset` in batches; kept (with its workers and their caches) for
        the data sets evaluated every epoch."""
        key = id(dataset)
        if key not in self._loaders:
            procs = self.processes
            bs = self.cfg["eval_batch_size"] or self.cfg["batch_size"]
            batches = in_batches(contiguous_block(len(dataset), procs.rank, procs.world_size), bs)
            persistent = dataset is self.val_set or dataset is self.train_set
            loader = self._loader(dataset, batches, persistent)
            if not persistent:
                return loader
            self._loaders[key] = loader
        return self._loaders[key]

    def _train_loader(self):
        key = id(self.train_sampler)
        if key not in self._loaders:
            self._loaders[key] = self._loader(self.train_set, self.train_sampler, persistent=True)
        return self._loaders[key]

    def _chunk_results(self, summaries) -> List[Any]:
        """Chunk results of the rank's chunks of the training set, gathered from all ranks;
        `summaries(positions)` yields (position, Summary) pairs."""
        n = len(self.train_set)
        acc = ChunkedStatistics(len(self.train_set.species))
        for position, summary in summaries(list(chunk_positions(n, self.processes.rank, self.processes.world_size))):
            acc.add(position, summary)
        return distributed.all_gather(acc.results())

    def _combine_on_rank0(self, gathered, **kwargs) -> Dict[str, Any]:
        n = len(self.train_set)
        result, error = None, None
        if self.processes.is_main:  # one LAPACK for every rank: the same bits everywhere
            try:
                result = combine(gathered, len(self.train_set.species), num_chunks(n), **kwargs)
            except ValueError as err:
                error = err
        result, error = distributed.broadcast((result, error))
        if error is not None:
            raise error
        return result

    def _fitted_statistics(self) -> Dict[str, Any]:
        """shift, scale and conv_denominator of the training split, one pass sharded over ranks
        and DataLoader workers (graphs are built in the workers; only summaries come back)."""
        if len(self.train_set) == 0:
            raise ValueError("cannot compute statistics of an empty data set")

        def summaries(positions):
            loader = torch.utils.data.DataLoader(_Summaries(self.train_set), batch_size=64, sampler=positions,
                                                 collate_fn=list, num_workers=self.num_workers)
            for chunk in loader:
                yield from chunk

        return self._combine_on_rank0(self._chunk_results(summaries))

    def _statistics(self, model: Optional[HIENet], resuming: bool) -> Dict[str, Any]:
        """Model constants: fitted for a new model (`auto` by default), kept or set for a loaded one.

        On resume the checkpoint's values are used as they are.
        """
        if resuming:
            return {}
        wanted = dict(self.cfg["statistics"])
        if model is None:
            fitted = None
            out = {}
            for key, value in wanted.items():
                if value in (None, "auto"):
                    fitted = fitted or self._fitted_statistics()
                    out[key] = fitted[key]
                elif isinstance(value, str):
                    raise ValueError(f"statistics.{key} = {value!r} needs a loaded model (init_checkpoint)")
                else:
                    out[key] = value
            return out
        out = {}
        for key, value in wanted.items():
            if value in (None, "keep"):
                continue
            if value == "auto" and key != "shift":
                raise ValueError(f"statistics.{key} = 'auto' would rescale a trained model; "
                                 "use 'keep' or a number")
            if key == "shift" and value in ("auto", "refit"):
                value = self._refit_shift(model)
            out[key] = value
        if out:
            set_model_constants(model, **out)
        return out

    @torch.no_grad()
    def _refit_shift(self, model: HIENet) -> List[float]:
        """Shift + least-squares fit of the residual E_ref − E_model on the training split."""
        model = model.to(dtype=self.dtype, device=self.device)
        n_species = len(self.train_set.species)
        bs = self.cfg["eval_batch_size"] or self.cfg["batch_size"]

        def summaries(positions):
            for cpu_batch in self._loader(self.train_set, in_batches(positions, bs)):
                batch = to_device(cpu_batch, self.device)
                out = evaluate(model, batch[K.SPECIES], batch[K.EDGE_INDEX], batch[K.EDGE_VEC], batch[K.BATCH],
                               int(batch[K.NUM_ATOMS].shape[0]), compute_forces=False, compute_stress=False)
                residual = (cpu_batch[K.ENERGY].double() - out[K.ENERGY].double().cpu()).numpy()
                counts = np.zeros((len(residual), n_species), dtype=np.int64)
                np.add.at(counts, (cpu_batch[K.BATCH].numpy(), cpu_batch[K.SPECIES].numpy()), 1)
                for position, c, r in zip(cpu_batch[INDEX].tolist(), counts, residual):
                    yield position, Summary(counts=c, energy=float(r))

        delta = self._combine_on_rank0(self._chunk_results(summaries), shift_only=True)["shift"]
        return (model.shift.double().cpu().numpy() + np.asarray(delta)).tolist()

    def _warn_config_changes(self, stored: Dict[str, Any]) -> None:
        changed = [k for k in ("data", "model", "init_checkpoint", "statistics", "seed", "dtype", "batch_size",
                               "loss", "optimizer", "scheduler", "ema_decay", "ema_warmup", "grad_clip", "epochs")
                   if k in stored and _without_io_options(stored, k) != _without_io_options(self.cfg, k)]
        if changed:
            self.log(f"warning: resuming with changed config keys {changed}; the run is no longer "
                     "identical to an uninterrupted one")

    def _provenance(self, origin: str) -> None:
        m = self.model
        n_params = sum(p.numel() for p in m.parameters())
        procs = self.processes
        self.log(f"hienet-train {__version__} (git {git_revision()}), torch {torch.__version__}, "
                 f"device {self.device}, dtype {self.cfg['dtype']}, seed {self.cfg['seed']}")
        if procs.distributed:
            self.log(f"data parallel: {procs.world_size} processes ({procs.launcher}, "
                     f"{'nccl' if self.device.type == 'cuda' else 'gloo'}), global batch {self.cfg['batch_size']} = "
                     f"{self.cfg['batch_size'] // procs.world_size} per process")
        self.log(f"model: {origin}; species {m.species}, cutoff {m.cutoff} Å, {n_params} parameters, "
                 f"hidden {m.config['hidden_irreps']}, lmax {m.config['lmax']}")
        shift = ", ".join(f"{s} {v:.4f}" for s, v in zip(m.species, m.config["shift"]))
        self.log(f"constants: shift [{shift}] eV, scale {m.config['scale'][0]:.4f}, "
                 f"conv_denominator {m.config['conv_denominator']:.3f}")
        how = (f"streamed from disk, {self.num_workers} worker(s) per process" if self.stream
               else "in memory" + (f", {self.num_workers} worker(s) per process" if self.num_workers else ""))
        self.log(f"data: {len(self.train_set)} training / {len(self.val_set)} validation structures ({how}), "
                 f"{self.steps_per_epoch} steps per epoch, {self.total_steps} steps in total")

    # ------------------------------------------------------------------------------------------
    def _predict(self, model, batch, create_graph: bool):
        stress = bool(batch[HAS_STRESS].any())
        return evaluate(model, batch[K.SPECIES], batch[K.EDGE_INDEX], batch[K.EDGE_VEC], batch[K.BATCH],
                        int(batch[K.NUM_ATOMS].shape[0]), volume=batch[K.VOLUME], compute_forces=True,
                        compute_stress=stress, create_graph=create_graph)

    def evaluate(self, dataset, model=None) -> Dict[str, float]:
        """Loss and MAE/RMSE of `model` (default: the live model with the EMA weights) on `dataset`
        (each rank evaluates its block; the sums are added over ranks)."""
        if model is None:
            with self.ema.averaged(self.model) as averaged:
                return self.evaluate(dataset, averaged)
        metrics = ErrorMetrics(self.metric_loss)
        for cpu_batch in self._eval_loader(dataset):
            if cpu_batch is None:
                continue
            batch = to_device(cpu_batch, self.device)
            metrics.update(self._predict(model, batch, create_graph=False), batch)
        return metrics.reduce(distributed.all_reduce_sum, self.device).result()

    def _padding_batch(self):
        """A rank with no part of a short last batch still joins the gradient reduction: with one
        structure whose loss is multiplied by zero."""
        if self._padding is None:
            self._padding = collate_or_none([self.train_set[0]], self.dtype)
        return self._padding

    def train_step(self, cpu_batch, metrics: Optional[ErrorMetrics] = None):
        """One optimisation step on this rank's part of a global batch; returns (global loss,
        gradient norm before clipping, structures in the global batch)."""
        cfg = self.cfg
        world = self.processes.world_size
        padding = cpu_batch is None
        if padding:
            cpu_batch = self._padding_batch()
        batch = to_device(cpu_batch, self.device)
        counts = torch.tensor([0, 0, 0] if padding else self.metric_loss.counts(cpu_batch), dtype=self.dtype,
                              device=self.device)
        # normalise by the counts of the whole global batch: summed over ranks during the forward
        global_counts = distributed.all_reduce_sum_async(counts)
        self.optimizer.zero_grad(set_to_none=True)
        out = self._predict(self.trained, batch, create_graph=True)
        if world > 1:
            batch[LOSS_NORM] = global_counts()
        total, parts = self.loss_fn(out, batch)
        if padding:
            total = total * 0.0
        # the global batch's loss, summed over ranks during the backward pass; the step is only
        # taken once it is known to be finite
        global_loss = distributed.all_reduce_sum_async(total.detach().reshape(1).clone())
        # DDP averages the gradients over ranks; the per-rank losses add up to the global one
        (total * world if world > 1 else total).backward()
        loss = global_loss()[0]
        if not torch.isfinite(loss):
            raise self._diverged(f"the loss is {float(loss)}", batch, padding,
                                 local=not bool(torch.isfinite(total.detach())))
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        if cfg["grad_clip"]:
            norm = torch.nn.utils.clip_grad_norm_(parameters, float(cfg["grad_clip"]))
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
        if not torch.isfinite(norm):
            raise self._diverged(f"the gradient norm is {float(norm)}", batch, padding, local=False)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        if metrics is not None and not padding:
            metrics.update(out, batch)
        return float(loss), float(norm), int(global_counts()[0])

    def train_epoch(self, bar=None) -> Dict[str, float]:
        self.model.train()
        self.train_sampler.set_epoch(self.epoch)
        metrics = ErrorMetrics(self.metric_loss)
        norms = []
        for cpu_batch in self._train_loader():
            loss, norm, structures = self.train_step(cpu_batch, metrics)
            norms.append(norm)
            if bar is not None:
                bar.update(structures)
                bar.set_postfix(loss=f"{loss:.4g}")
        result = metrics.reduce(distributed.all_reduce_sum, self.device).result()
        result["grad_norm"] = float(np.mean(norms)) if norms else float("nan")
        return result

    def _diverged(self, what: str, batch, padding: bool, local: bool) -> TrainingDiverged:
        """The error every rank raises; its message names the structures of the step (those of
        the ranks whose own loss was not finite, if any)."""
        names = [] if padding else [self.train_set.name(int(i)) for i in batch[INDEX].tolist()]
        parts = distributed.all_gather((local, names))
        flagged = [n for bad, ns in parts if bad for n in ns]
        names = flagged or [n for _, ns in parts for n in ns]
        return TrainingDiverged(
            f"training stopped at epoch {self.epoch}, step {self.step + 1}: {what} (batch: "
            f"{'; '.join(names)}). Nothing was saved for this epoch: {self.out_dir / LAST} holds "
            f"epoch {self.epoch - 1}; resume from it with --resume (e.g. with a lower learning rate)"
        )

    def _check_before_saving(self, model, value: float) -> None:
        """TrainingDiverged unless the weights about to be saved and the metric are finite."""
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingDiverged(f"training stopped after epoch {self.epoch}: weight {name} is not "
                                       f"finite; {self.out_dir / LAST} keeps epoch {self.epoch - 1}")
        if not math.isfinite(value):
            raise TrainingDiverged(f"training stopped after epoch {self.epoch}: the {self._best_key()} "
                                   f"is {value}; {self.out_dir / LAST} keeps epoch {self.epoch - 1}")

    def _best_key(self) -> str:
        return {"loss": "loss", "energy_mae": "energy_mae", "force_mae": "force_mae",
                "stress_mae": "stress_mae"}[self.cfg["best_metric"]]

    def _train_state(self, metrics_row: Dict[str, Any]) -> Dict[str, Any]:
        cfg = {k: v for k, v in self.cfg.items() if not k.startswith("_")}
        return _to_cpu({
            "epoch": self.epoch,
            "global_step": self.step,
            "model_state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            # the averaged weights are the checkpoint's state_dict; here only the counters
            "ema": {"decay": self.ema.decay, "warmup": self.ema.warmup, "num_updates": self.ema.num_updates},
            "rng": rng_state(),
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "validation_indices": list(self.validation_indices),
            "train_config": cfg,
            "metrics": metrics_row,
        })

    def _write_metrics(self, row: Dict[str, Any]) -> None:
        path = self.out_dir / METRICS
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})

    def _truncate_metrics(self) -> None:
        """On resume: drop rows of epochs after the checkpoint (written before an interruption)."""
        path = self.out_dir / METRICS
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= self.epoch]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def _row(self, epoch_time: float, train: Optional[Dict[str, float]], val: Dict[str, float]) -> Dict[str, Any]:
        row = {"epoch": self.epoch, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
               "time_s": round(epoch_time, 3)}
        for prefix, res in (("train_", train or {}), ("val_", val)):
            for column, key in _METRIC_COLUMNS:
                if key in res:
                    row[prefix + column] = res[key]
        if train and "grad_norm" in train:
            row["train_grad_norm"] = train["grad_norm"]
        return row

    def fit(self, until_epoch: Optional[int] = None) -> Dict[str, Any]:
        """Train to `epochs` (or stop after `until_epoch`, e.g. to test resuming). Returns a summary.

        Every rank runs the same epochs; rank 0 alone writes files, logs and progress bars."""
        from tqdm import tqdm

        cfg = self.cfg
        main = self.processes.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "train_config.yaml").write_text(
                dump_config({k: v for k, v in cfg.items() if not k.startswith("_")}))
        last_epoch = cfg["epochs"] if until_epoch is None else min(until_epoch, cfg["epochs"])
        validate_on = self.val_set if len(self.val_set) else None
        if self.resumed:
            if main:
                self._truncate_metrics()
        else:
            if main and (self.out_dir / METRICS).exists():
                (self.out_dir / METRICS).unlink()
            initial = self.evaluate(validate_on or self.train_set)
            if main:
                self._write_metrics(self._row(0.0, None, initial))
        progress = bool(cfg["progress"]) and main
        epochs_bar = tqdm(total=cfg["epochs"], initial=self.epoch, desc="epochs", unit="epoch",
                          disable=not progress, dynamic_ncols=True)
        row = {}
        try:
            while self.epoch < last_epoch:
                t0 = time.perf_counter()
                self.epoch += 1
                with tqdm(total=len(self.train_set), desc=f"epoch {self.epoch}", unit="structure", leave=False,
                          disable=not progress, dynamic_ncols=True) as bar:
                    train = self.train_epoch(bar)
                val = self.evaluate(validate_on) if validate_on is not None else {}
                row = self._row(time.perf_counter() - t0, train, val)
                value = (val or train)[self._best_key()]
                improved = value < self.best_value
                if improved:
                    self.best_value, self.best_epoch = value, self.epoch
                state = self._train_state(row)  # live weights, before swapping in the averages
                with self.ema.averaged(self.model) as averaged:
                    # the same weights and metric on every rank: all ranks stop here together
                    self._check_before_saving(averaged, value)
                    self._check_before_saving(self.model, value)  # the live weights go into train_state
                    if main:
                        self._write_metrics(row)
                        if improved:
                            save_checkpoint(self.out_dir / BEST, averaged,
                                            {"epoch": self.epoch, "metrics": row, "train_config": state["train_config"]})
                        save_checkpoint(self.out_dir / LAST, averaged, state)
                summary = {"loss": f"{train['loss']:.4g}"}
                if val:
                    summary.update(E=f"{val['energy_mae']:.2f}meV/at", F=f"{val['force_mae']:.1f}meV/Å",
                                   S=f"{val['stress_mae']:.3f}GPa")
                epochs_bar.set_postfix(summary)
                epochs_bar.update(1)
                if not progress:
                    self.log(f"epoch {self.epoch}/{cfg['epochs']}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
        finally:
            epochs_bar.close()
        if main:
            self._plot_training_curve()
        return {"epoch": self.epoch, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "last_metrics": row, "output_dir": str(self.out_dir)}

    def close(self) -> None:
        """Lets the DataLoader workers kept between epochs go (a loader stops its workers when
        it is freed) and the DistributedDataParallel wrapper, whose communication state must be
        freed while the process group still exists (freed after it, it can block at exit)."""
        self._loaders.clear()
        self.trained = self.model

    def _plot_training_curve(self) -> None:
        """training_curve.png from metrics.csv; a failed plot is a warning, never a failed run."""
        try:
            from ..evaluation.plots import training_curve

            training_curve(self.out_dir / METRICS, self.out_dir / "training_curve.png")
        except Exception as err:  # the checkpoints are saved: do not lose the run over a figure
            self.log(f"warning: training_curve.png not written: {err}")


def train(config: Dict[str, Any], resume: bool = False, log=None) -> Dict[str, Any]:
    """Train (or resume) with a config dict; returns `Trainer.fit`'s summary."""
    trainer = Trainer(config, resume=resume, log=log)
    try:
        return trainer.fit()
    finally:
        trainer.close()
