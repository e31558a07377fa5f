"""Evaluating HIENet models: test-set errors, diatomic curves, plots (`hienet-eval`).

    predictor.py   batched predictions of any model kind on many structures
    metrics.py     MAE/RMSE overall, per element and per structure type
    diatomics.py   E(r), F(r) of atom pairs and their metrics
    plots.py       parity, error-histogram, training-curve and diatomic PNGs
    report.py      predictions extxyz, JSON/CSV summaries, printed tables
    deviation.py   model deviation of an ensemble on trajectory frames (--ensemble, --select)
    cli.py         the `hienet-eval` command (and its Python entry points)
"""
from .cli import evaluate_diatomics, evaluate_test_set, training_curve_png
from .predictor import Prediction, Predictor

__all__ = ["Predictor", "Prediction", "evaluate_test_set", "evaluate_diatomics", "training_curve_png"]
