"""Loss (weighted Huber on energy per atom, force and stress components) and error metrics.

    L = w_E · Huber_δ(E/N − E_ref/N) + w_F · Huber_δ(F − F_ref) + w_σ · Huber_δ(c·(σ − σ_ref))

each term a mean over its components (structures; atoms × 3; structures with stress × 6 Voigt
components), c the stress unit factor (kbar by default, as SevenNet/HIENet train). Paper
weights: w = (1, 1, 0.01), δ = 0.01.
"""
from typing import Dict, Tuple

import torch

from ..graph import keys as K
from .config import STRESS_UNITS
from .dataset import HAS_STRESS

_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])  # xx yy zz yz xz xy


def voigt(tensor: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) → (B, 6) [xx, yy, zz, yz, xz, xy] of the symmetric part."""
    sym = 0.5 * (tensor + tensor.transpose(-1, -2))
    return sym[:, _VOIGT[0], _VOIGT[1]]


class WeightedHuberLoss:
    def __init__(self, energy_weight=1.0, force_weight=1.0, stress_weight=0.01, huber_delta=0.01,
                 stress_unit="kbar"):
        self.weights = {"energy": float(energy_weight), "force": float(force_weight),
                        "stress": float(stress_weight)}
        self.delta = float(huber_delta)
        self.stress_factor = STRESS_UNITS[stress_unit]

    @property
    def needs_stress(self) -> bool:
        return self.weights["stress"] != 0.0

    def __call__(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                 ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        huber = torch.nn.functional.huber_loss
        n = batch[K.NUM_ATOMS].to(out[K.ENERGY].dtype)
        parts = {
            "energy": huber(out[K.ENERGY] / n, batch[K.ENERGY] / n, delta=self.delta),
            "force": huber(out[K.FORCES], batch[K.FORCES], delta=self.delta),
        }
        mask = batch[HAS_STRESS]
        if self.needs_stress and K.STRESS in out and bool(mask.any()):
            c = self.stress_factor
            parts["stress"] = huber(c * voigt(out[K.STRESS][mask]), c * voigt(batch[K.STRESS][mask]),
                                    delta=self.delta)
        else:
            parts["stress"] = torch.zeros((), dtype=n.dtype, device=n.device)
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, parts


class ErrorMetrics:
    """Accumulates MAE/RMSE of energy per atom (meV/atom), forces (meV/Å), stress (GPa)."""

    UNITS = {"energy": 1e3, "force": 1e3, "stress": STRESS_UNITS["GPa"]}

    def __init__(self):
        self.sums = {k: [0.0, 0.0, 0] for k in self.UNITS}  # |err| sum, err² sum, count
        self.loss_sums = {}
        self.loss_count = 0

    def _add(self, key: str, err: torch.Tensor) -> None:
        err = err.detach().double().reshape(-1) * self.UNITS[key]
        s = self.sums[key]
        s[0] += float(err.abs().sum())
        s[1] += float((err**2).sum())
        s[2] += err.numel()

    def update(self, out, batch, loss_parts=None, total=None) -> None:
        n = batch[K.NUM_ATOMS].to(out[K.ENERGY].dtype)
        self._add("energy", out[K.ENERGY] / n - batch[K.ENERGY] / n)
        self._add("force", out[K.FORCES] - batch[K.FORCES])
        mask = batch[HAS_STRESS]
        if K.STRESS in out and bool(mask.any()):
            self._add("stress", voigt(out[K.STRESS][mask]) - voigt(batch[K.STRESS][mask]))
        if loss_parts is not None:  # losses are batch means: weight by structures
            b = int(batch[K.NUM_ATOMS].shape[0])
            for k, v in {**loss_parts, "loss": total}.items():
                self.loss_sums[k] = self.loss_sums.get(k, 0.0) + float(v.detach()) * b
            self.loss_count += b

    def result(self) -> Dict[str, float]:
        res = {}
        for key, (abs_sum, sq_sum, count) in self.sums.items():
            res[f"{key}_mae"] = abs_sum / count if count else float("nan")
            res[f"{key}_rmse"] = (sq_sum / count) ** 0.5 if count else float("nan")
        for key, value in self.loss_sums.items():
            res[key if key == "loss" else f"{key}_loss"] = value / self.loss_count
        return res
