"""Loss (weighted Huber on energy per atom, force and stress components) and error metrics.

    L = w_E · Huber_δ(E/N − E_ref/N) + w_F · Huber_δ(F − F_ref) + w_σ · Huber_δ(c·(σ − σ_ref))

each term a mean over its components (structures; atoms × 3; structures with stress × 6 Voigt
components), c the stress unit factor (kbar by default, as SevenNet/HIENet train). Paper
weights: w = (1, 1, 0.01), δ = 0.01.

Data parallel: each rank holds part of a batch, so each term is the rank's Huber *sum* divided
by the component count of the whole (global) batch, `batch[LOSS_NORM]`; the per-rank losses
then add up to the single-process loss of the global batch, and so do their gradients.
"""
from typing import Dict, Tuple

import torch

from ..graph import keys as K
from .config import STRESS_UNITS
from .dataset import HAS_STRESS

_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])  # xx yy zz yz xz xy
TERMS = ("energy", "force", "stress")
# (3,) component counts [structures, force components, stress components] of the global batch
# this batch is part of; absent: the batch's own counts
LOSS_NORM = "loss_norm"


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

    def sums(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
             ) -> Dict[str, Tuple[torch.Tensor, int]]:
        """{term: (Huber sum over its components, number of components)} of this batch."""
        huber = torch.nn.functional.huber_loss
        n = batch[K.NUM_ATOMS].to(out[K.ENERGY].dtype)
        terms = {
            "energy": (huber(out[K.ENERGY] / n, batch[K.ENERGY] / n, delta=self.delta, reduction="sum"), n.numel()),
            "force": (huber(out[K.FORCES], batch[K.FORCES], delta=self.delta, reduction="sum"), out[K.FORCES].numel()),
        }
        mask = batch[HAS_STRESS]
        if self.needs_stress and K.STRESS in out and bool(mask.any()):
            c = self.stress_factor
            pred, ref = c * voigt(out[K.STRESS][mask]), c * voigt(batch[K.STRESS][mask])
            terms["stress"] = (huber(pred, ref, delta=self.delta, reduction="sum"), pred.numel())
        else:
            terms["stress"] = (torch.zeros((), dtype=n.dtype, device=n.device), 0)
        return terms

    def counts(self, batch: Dict[str, torch.Tensor]):
        """[structures, force components, stress components] of a batch (before the model runs;
        stress is predicted for batches with a stress label)."""
        num_atoms = batch[K.NUM_ATOMS]
        n_stress = int(batch[HAS_STRESS].sum()) * 6 if self.needs_stress else 0
        return [num_atoms.numel(), 3 * int(num_atoms.sum()), n_stress]

    def __call__(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                 ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        sums = self.sums(out, batch)
        norm = batch.get(LOSS_NORM)
        parts = {}
        for k, term in enumerate(TERMS):
            total, count = sums[term]
            denominator = norm[k] if norm is not None else count
            parts[term] = total / (denominator if count else 1)  # no components: the sum is 0
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, parts


class ErrorMetrics:
    """Accumulates MAE/RMSE of energy per atom (meV/atom), forces (meV/Å), stress (GPa) and the
    loss terms as sums and counts over a whole data set; `reduce` adds those of all ranks, so
    the result is that of the union of the ranks' structures (not a mean of means)."""

    UNITS = {"energy": 1e3, "force": 1e3, "stress": STRESS_UNITS["GPa"]}

    def __init__(self, loss: WeightedHuberLoss):
        self.loss = loss
        self.sums = {k: [0.0, 0.0, 0] for k in self.UNITS}  # |err| sum, err² sum, count
        self.loss_sums = {k: [0.0, 0] for k in TERMS}  # Huber sum, components

    def _add(self, key: str, err: torch.Tensor) -> None:
        err = err.detach().double().reshape(-1) * self.UNITS[key]
        s = self.sums[key]
        s[0] += float(err.abs().sum())
        s[1] += float((err**2).sum())
        s[2] += err.numel()

    @torch.no_grad()
    def update(self, out, batch) -> None:
        n = batch[K.NUM_ATOMS].to(out[K.ENERGY].dtype)
        self._add("energy", out[K.ENERGY] / n - batch[K.ENERGY] / n)
        self._add("force", out[K.FORCES] - batch[K.FORCES])
        mask = batch[HAS_STRESS]
        if K.STRESS in out and bool(mask.any()):
            self._add("stress", voigt(out[K.STRESS][mask]) - voigt(batch[K.STRESS][mask]))
        for term, (total, count) in self.loss.sums(out, batch).items():
            self.loss_sums[term][0] += float(total.detach())
            self.loss_sums[term][1] += count

    def _vector(self):
        return [v for key in self.UNITS for v in self.sums[key]] + [v for t in TERMS for v in self.loss_sums[t]]

    def reduce(self, all_reduce_sum, device) -> "ErrorMetrics":
        """Adds the sums of all ranks (`all_reduce_sum` of a float64 tensor on `device`)."""
        values = all_reduce_sum(torch.tensor(self._vector(), dtype=torch.float64, device=device)).tolist()
        for key in self.UNITS:
            a, b, c = values[:3]
            self.sums[key] = [a, b, int(round(c))]
            values = values[3:]
        for term in TERMS:
            self.loss_sums[term] = [values[0], int(round(values[1]))]
            values = values[2:]
        return self

    def result(self) -> Dict[str, float]:
        res = {}
        for key, (abs_sum, sq_sum, count) in self.sums.items():
            res[f"{key}_mae"] = abs_sum / count if count else float("nan")
            res[f"{key}_rmse"] = (sq_sum / count) ** 0.5 if count else float("nan")
        total = 0.0
        for term, (huber_sum, count) in self.loss_sums.items():
            res[f"{term}_loss"] = value = huber_sum / count if count else 0.0
            total += self.loss.weights[term] * value
        res["loss"] = total
        return res
