"""The HIENet trainer: data → statistics → model → AdamW/cosine/EMA loop → checkpoints.

Stages of `Trainer.__init__`, in order:

1. config      defaults + the user's config (`hienet.train.config`), seeds, device, dtype
2. model spec  resume: the last checkpoint; fine-tune: our or an official checkpoint;
               new: `make_config(preset, **model)` with species from the data
3. data        graphs at the model's cutoff; seeded train/validation split
4. statistics  per-species shift (least squares), scale (force RMS), conv denominator
               (average neighbour count) from the training split — new models only
5. model       built under `torch.manual_seed(seed)`, moved to device/dtype
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
an uninterrupted run (bit for bit on CPU).
"""
import csv
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
from ..devices import resolve_device
from ..graph import keys as K
from ..model import HIENet, build_model, make_config
from ..model.forces import evaluate
from .config import dump_config, resolve_config
from .dataset import HAS_STRESS, INDEX, GraphDataset, batches, num_batches, read_structures, split_indices
from .ema import ExponentialMovingAverage
from .loss import ErrorMetrics, WeightedHuberLoss
from .schedule import cosine_warmup
from .statistics import dataset_statistics, fit_energy_shift

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
               + [f"train_{c}" for c, _ in _METRIC_COLUMNS] + [f"val_{c}" for c, _ in _METRIC_COLUMNS])


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


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient or weight: training stops before anything is saved."""


class Trainer:
    """See the module docstring. `log` receives one-line messages (default: stderr)."""

    def __init__(self, config: Dict[str, Any], resume: bool = False,
                 log: Optional[Callable[[str], None]] = None):
        # 1. config ---------------------------------------------------------------------------
        self.cfg = cfg = resolve_config(config)
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.out_dir = Path(cfg["output_dir"])
        self.device = resolve_device(cfg["device"])
        self.dtype = _DTYPES[cfg["dtype"]]
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        if cfg["deterministic"] and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed = int(cfg["seed"])
        seed_everything(seed)
        data_cfg = cfg["data"]
        label_keys = {k: data_cfg[k] for k in ("energy_key", "forces_key", "stress_key")}

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
        train_frames = read_structures(data_cfg["train"])
        if model is None:
            if "species" not in model_section:
                from ase.data import atomic_numbers

                symbols = {s for atoms in train_frames for s in atoms.get_chemical_symbols()}
                model_section["species"] = sorted(symbols, key=atomic_numbers.__getitem__)
            spec = make_config(preset, **model_section)
            species, cutoff = spec["species"], spec["cutoff"]
            origin = f"new model (preset {preset!r})"
        else:
            species, cutoff = list(model.species), float(model.cutoff)

        # 3. data ---------------------------------------------------------------------------------
        full = GraphDataset(train_frames, species, cutoff, source=str(data_cfg["train"]), **label_keys)
        if data_cfg["validation"] is not None:
            self.train_set = full
            self.val_set = GraphDataset(read_structures(data_cfg["validation"]), species, cutoff,
                                        source=str(data_cfg["validation"]), **label_keys)
            self.validation_indices: List[int] = []
        else:
            train_idx, val_idx = split_indices(len(full), float(data_cfg["validation_fraction"]), seed)
            self.train_set, self.val_set = full.subset(train_idx), full.subset(val_idx)
            self.validation_indices = val_idx
        if resume_state is not None and resume_state.get("validation_indices") != self.validation_indices:
            raise ValueError("cannot resume: the train/validation split differs from the checkpoint's "
                             "(data, seed or validation_fraction changed)")

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

        # 6. optimiser, schedule, EMA ---------------------------------------------------------------
        opt_cfg, sched_cfg = cfg["optimizer"], cfg["scheduler"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(opt_cfg["lr"]),
                                           weight_decay=float(opt_cfg["weight_decay"]),
                                           betas=tuple(opt_cfg["betas"]))
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
        self._provenance(origin)

    # ------------------------------------------------------------------------------------------
    def _statistics(self, model: Optional[HIENet], resuming: bool) -> Dict[str, Any]:
        """Model constants: fitted for a new model (`auto` by default), kept or set for a loaded one.

        On resume the checkpoint's values are used as they are.
        """
        if resuming:
            return {}
        wanted = dict(self.cfg["statistics"])
        if model is None:
            fitted = dataset_statistics(self.train_set)
            out = {}
            for key, value in wanted.items():
                if value in (None, "auto"):
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
        predicted = []
        for batch in batches(self.train_set, self.cfg["eval_batch_size"] or self.cfg["batch_size"],
                             self.dtype, self.device):
            out = evaluate(model, batch[K.SPECIES], batch[K.EDGE_INDEX], batch[K.EDGE_VEC], batch[K.BATCH],
                           int(batch[K.NUM_ATOMS].shape[0]), compute_forces=False, compute_stress=False)
            predicted.append(out[K.ENERGY].double().cpu().numpy())
        residual = self.train_set.energies() - np.concatenate(predicted)
        delta = fit_energy_shift(self.train_set.species_counts(), residual)
        return (model.shift.double().cpu().numpy() + delta).tolist()

    def _warn_config_changes(self, stored: Dict[str, Any]) -> None:
        changed = [k for k in ("data", "model", "init_checkpoint", "statistics", "seed", "dtype", "batch_size",
                               "loss", "optimizer", "scheduler", "ema_decay", "ema_warmup", "grad_clip", "epochs")
                   if k in stored and stored[k] != self.cfg[k]]
        if changed:
            self.log(f"warning: resuming with changed config keys {changed}; the run is no longer "
                     "identical to an uninterrupted one")

    def _provenance(self, origin: str) -> None:
        m = self.model
        n_params = sum(p.numel() for p in m.parameters())
        self.log(f"hienet-train {__version__} (git {git_revision()}), torch {torch.__version__}, "
                 f"device {self.device}, dtype {self.cfg['dtype']}, seed {self.cfg['seed']}")
        self.log(f"model: {origin}; species {m.species}, cutoff {m.cutoff} Å, {n_params} parameters, "
                 f"hidden {m.config['hidden_irreps']}, lmax {m.config['lmax']}")
        shift = ", ".join(f"{s} {v:.4f}" for s, v in zip(m.species, m.config["shift"]))
        self.log(f"constants: shift [{shift}] eV, scale {m.config['scale'][0]:.4f}, "
                 f"conv_denominator {m.config['conv_denominator']:.3f}")
        self.log(f"data: {len(self.train_set)} training / {len(self.val_set)} validation structures, "
                 f"{self.steps_per_epoch} steps per epoch, {self.total_steps} steps in total")

    # ------------------------------------------------------------------------------------------
    def _predict(self, model, batch, create_graph: bool):
        stress = bool(batch[HAS_STRESS].any())
        return evaluate(model, batch[K.SPECIES], batch[K.EDGE_INDEX], batch[K.EDGE_VEC], batch[K.BATCH],
                        int(batch[K.NUM_ATOMS].shape[0]), volume=batch[K.VOLUME], compute_forces=True,
                        compute_stress=stress, create_graph=create_graph)

    def evaluate(self, dataset: GraphDataset, model=None) -> Dict[str, float]:
        """Loss and MAE/RMSE of `model` (default: the live model with the EMA weights) on `dataset`."""
        if model is None:
            with self.ema.averaged(self.model) as averaged:
                return self.evaluate(dataset, averaged)
        metrics = ErrorMetrics()
        bs = self.cfg["eval_batch_size"] or self.cfg["batch_size"]
        for batch in batches(dataset, bs, self.dtype, self.device):
            out = self._predict(model, batch, create_graph=False)
            total, parts = self.loss_fn(out, batch)
            metrics.update(out, batch, parts, total)
        return metrics.result()

    def train_epoch(self, bar=None) -> Dict[str, float]:
        cfg = self.cfg
        self.model.train()
        order = np.random.default_rng([int(cfg["seed"]), self.epoch]).permutation(len(self.train_set))
        metrics = ErrorMetrics()
        for batch in batches(self.train_set, cfg["batch_size"], self.dtype, self.device, order):
            self.optimizer.zero_grad(set_to_none=True)
            out = self._predict(self.model, batch, create_graph=True)
            total, parts = self.loss_fn(out, batch)
            if not torch.isfinite(total):
                raise self._diverged(f"the loss is {float(total.detach())}", batch)
            total.backward()
            parameters = [p for p in self.model.parameters() if p.grad is not None]
            if cfg["grad_clip"]:
                norm = torch.nn.utils.clip_grad_norm_(parameters, float(cfg["grad_clip"]))
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
            if not torch.isfinite(norm):
                raise self._diverged(f"the gradient norm is {float(norm)}", batch)
            self.optimizer.step()
            self.scheduler.step()
            self.ema.update(self.model)
            self.step += 1
            metrics.update(out, batch, parts, total)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(total.detach()):.4g}")
        return metrics.result()

    def _diverged(self, what: str, batch) -> TrainingDiverged:
        names = [self.train_set.names[int(i)] for i in batch[INDEX]]
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
        return row

    def fit(self, until_epoch: Optional[int] = None) -> Dict[str, Any]:
        """Train to `epochs` (or stop after `until_epoch`, e.g. to test resuming). Returns a summary."""
        from tqdm import tqdm

        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "train_config.yaml").write_text(
            dump_config({k: v for k, v in cfg.items() if not k.startswith("_")}))
        last_epoch = cfg["epochs"] if until_epoch is None else min(until_epoch, cfg["epochs"])
        validate_on = self.val_set if len(self.val_set) else None
        if self.resumed:
            self._truncate_metrics()
        else:
            if (self.out_dir / METRICS).exists():
                (self.out_dir / METRICS).unlink()
            initial = self.evaluate(validate_on or self.train_set)
            self._write_metrics(self._row(0.0, None, initial))
        progress = bool(cfg["progress"])
        epochs_bar = tqdm(total=cfg["epochs"], initial=self.epoch, desc="epochs", unit="epoch",
                          disable=not progress, dynamic_ncols=True)
        row = {}
        try:
            while self.epoch < last_epoch:
                t0 = time.perf_counter()
                self.epoch += 1
                with tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch}", unit="batch", leave=False,
                          disable=not progress, dynamic_ncols=True) as bar:
                    train = self.train_epoch(bar)
                val = self.evaluate(validate_on) if validate_on is not None else {}
                row = self._row(time.perf_counter() - t0, train, val)
                value = (val or train)[self._best_key()]
                improved = value < self.best_value
                if improved:
                    self.best_value, self.best_epoch = value, self.epoch
                self._write_metrics(row)
                state = self._train_state(row)  # live weights, before swapping in the averages
                with self.ema.averaged(self.model) as averaged:
                    self._check_before_saving(averaged, value)
                    self._check_before_saving(self.model, value)  # the live weights go into train_state
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
        self._plot_training_curve()
        return {"epoch": self.epoch, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "last_metrics": row, "output_dir": str(self.out_dir)}

    def _plot_training_curve(self) -> None:
        """training_curve.png from metrics.csv; a failed plot is a warning, never a failed run."""
        try:
            from ..evaluation.plots import training_curve

            training_curve(self.out_dir / METRICS, self.out_dir / "training_curve.png")
        except Exception as err:  # the checkpoints are saved: do not lose the run over a figure
            self.log(f"warning: training_curve.png not written: {err}")


def train(config: Dict[str, Any], resume: bool = False, log=None) -> Dict[str, Any]:
    """Train (or resume) with a config dict; returns `Trainer.fit`'s summary."""
    return Trainer(config, resume=resume, log=log).fit()
