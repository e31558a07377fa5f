"""Training HIENet models: data, statistics, loss, EMA, schedule and the trainer loop.

Entry points: the `hienet-train` console script (`hienet.train.cli`), `train(config)` and
`Trainer(config).fit()`. See `hienet.train.config.TRAIN_DEFAULTS` for every option.
"""
from .config import TRAIN_DEFAULTS, load_config, resolve_config
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["TRAIN_DEFAULTS", "load_config", "resolve_config", "Trainer", "TrainingDiverged", "train"]
