"""Training configuration: defaults, YAML loading and validation.

A training config is a nested dict (YAML friendly). Unknown keys are an error naming the
dotted key and the valid choices, so a typo never silently falls back to a default. The
`model` section is passed to `hienet.model.make_config` (which validates its keys).

Relative paths (data files, output_dir, init_checkpoint) are relative to the current
working directory.
"""
import copy
from pathlib import Path
from typing import Any, Dict, Optional

TRAIN_DEFAULTS: Dict[str, Any] = {
    "seed": 0,  # model init, train/validation split, shuffling
    "device": "auto",  # auto (cuda if available) | cpu | cuda | cuda:N
    "dtype": "float32",  # float32 | float64 (model, data and checkpoints)
    "num_threads": None,  # torch intra-op threads on CPU (None: torch's default)
    # CUDA: deterministic kernels where torch has them (warns for the others) and a fixed cuBLAS
    # workspace; CPU kernels are deterministic anyway (same results for the same thread count).
    "deterministic": True,
    "output_dir": "hienet-train-output",
    "epochs": 100,
    "batch_size": 4,  # structures per optimisation step (the global batch, split over data-parallel ranks)
    "eval_batch_size": None,  # default: batch_size
    "data": {
        "train": None,  # extxyz (any ase.io format) with energy, forces, optional stress
        "validation": None,  # separate file; if None a seeded split of `train` is used
        "validation_fraction": 0.1,
        "energy_key": None,  # atoms.info key; None: the file's calculator results (extxyz energy=)
        "forces_key": None,  # atoms.arrays key; None: calculator results
        "stress_key": None,  # atoms.info key (6 Voigt or 9 values, eV/Å^3, ASE sign)
        # false: read every structure and build every graph up front (data that fit in memory);
        # true: index the file (extxyz or ASE .db) and read each structure and build its graph
        # when a batch needs it, in DataLoader workers (data larger than memory)
        "stream": False,
        "cache_size": 0,  # streamed data: graphs kept per process (least recently used dropped)
    },
    # DataLoader worker processes per rank reading structures and building graphs
    # (None: 2 for streamed data, 0 for data in memory)
    "num_workers": None,
    # seconds a rank waits in a collective (e.g. for a rank that died under srun) before failing
    "collective_timeout_s": 600,
    # Architecture (new models): a preset of hienet.model.PRESETS plus any model config key.
    "model": {"preset": "small"},
    # Fine-tuning: our checkpoint or an official HIENet checkpoint (weights and config taken
    # from it; the `model` section must then be empty).
    "init_checkpoint": None,
    # Data-derived model constants. None = `auto` for new models, `keep` for fine-tuning.
    "statistics": {
        "shift": None,  # auto (least-squares per-species energy) | keep | refit | number | list
        "scale": None,  # auto (force RMS over all components) | keep | number
        "conv_denominator": None,  # auto (average neighbour count at the cutoff) | keep | number
    },
    "loss": {
        "energy_weight": 1.0,  # Huber on energy per atom (eV/atom)
        "force_weight": 1.0,  # Huber on force components (eV/Å)
        "stress_weight": 0.01,  # Huber on stress components (in `stress_unit`)
        "huber_delta": 0.01,
        "stress_unit": "kbar",  # kbar (as SevenNet/HIENet train) | GPa | eV/A^3
    },
    "optimizer": {"lr": 0.01, "weight_decay": 0.001, "betas": [0.9, 0.999]},  # AdamW
    "scheduler": {
        # linear warm-up from warmup_factor*lr to lr over warmup_fraction of all steps, then
        # cosine decay to lr_min_factor*lr at the last step (stepped every batch)
        "warmup_fraction": 0.1,
        "warmup_factor": 0.2,
        "lr_min_factor": 0.0005,
    },
    "ema_decay": 0.999,  # EMA of the weights, used for validation and saved checkpoints
    "ema_warmup": True,  # decay_t = min(decay, (1 + t) / (10 + t)) so short runs are not dominated by the init
    "grad_clip": 10.0,  # max global gradient norm (None: off)
    "best_metric": "loss",  # loss | energy_mae | force_mae | stress_mae (validation, EMA weights)
    "progress": True,  # tqdm progress bars
}

STAT_CHOICES = ("auto", "keep", "refit")
STRESS_UNITS = {"kbar": 1602.1766208, "GPa": 160.21766208, "eV/A^3": 1.0}
BEST_METRICS = ("loss", "energy_mae", "force_mae", "stress_mae")


def _merge(defaults: Dict[str, Any], given: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            raise KeyError(
                f"unknown training config key {dotted!r}; valid keys here are {sorted(defaults)}"
            )
        if isinstance(defaults[key], dict) and key != "model":
            if not isinstance(value, dict):
                raise TypeError(f"training config key {dotted!r} must be a mapping, got {value!r}")
            out[key] = _merge(defaults[key], value, prefix=dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Defaults merged with `config`, checked; returns a new dict."""
    given = copy.deepcopy(config or {})
    if "model" in given and given["model"] is None:
        given["model"] = {}
    cfg = _merge(TRAIN_DEFAULTS, given)
    if "model" in given:  # the model section replaces the default one, it is not merged
        cfg["model"] = copy.deepcopy(given["model"])
    if cfg["data"]["train"] is None:
        raise ValueError("training config needs data.train (an extxyz file with energies and forces)")
    if cfg["init_checkpoint"] is not None and "model" in given and given["model"]:
        raise ValueError(
            "init_checkpoint takes the architecture from the checkpoint: remove the model section "
            f"(found keys {sorted(given['model'])})"
        )
    if cfg["dtype"] not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {cfg['dtype']!r}")
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"training config key {key!r} must be a positive integer, got {cfg[key]!r}")
    if not isinstance(cfg["data"]["stream"], bool):
        raise ValueError(f"data.stream must be true or false, got {cfg['data']['stream']!r}")
    for key, value in (("data.cache_size", cfg["data"]["cache_size"]), ("num_workers", cfg["num_workers"])):
        if (value is not None or key != "num_workers") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"training config key {key!r} must be a non-negative integer, got {value!r}")
    if not float(cfg["collective_timeout_s"]) > 0:
        raise ValueError(f"collective_timeout_s must be positive, got {cfg['collective_timeout_s']!r}")
    frac = cfg["data"]["validation_fraction"]
    if not 0.0 <= float(frac) < 1.0:
        raise ValueError(f"data.validation_fraction must be in [0, 1), got {frac}")
    unit = cfg["loss"]["stress_unit"]
    if unit not in STRESS_UNITS:
        raise ValueError(f"loss.stress_unit {unit!r} is not one of {sorted(STRESS_UNITS)}")
    if cfg["loss"]["huber_delta"] <= 0:
        raise ValueError("loss.huber_delta must be positive")
    if cfg["best_metric"] not in BEST_METRICS:
        raise ValueError(f"best_metric {cfg['best_metric']!r} is not one of {list(BEST_METRICS)}")
    if not 0.0 <= float(cfg["ema_decay"]) < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']}")
    sched = cfg["scheduler"]
    if not 0.0 <= sched["warmup_fraction"] < 1.0:
        raise ValueError("scheduler.warmup_fraction must be in [0, 1)")
    for key, value in cfg["statistics"].items():
        if isinstance(value, str) and value not in STAT_CHOICES:
            raise ValueError(
                f"statistics.{key} = {value!r}: use one of {list(STAT_CHOICES)} or a number"
            )
    return cfg


def load_config(path) -> Dict[str, Any]:
    """Read a YAML training config (not yet merged with defaults)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config file not found: {path}")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping")
    return config


def dump_config(config: Dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
