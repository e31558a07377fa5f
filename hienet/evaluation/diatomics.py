"""Diatomic curves: E(r) and F(r) of isolated atom pairs, with metrics in the spirit of
MLIP-Arena's diatomics benchmark (a physical pair curve is smooth, has one minimum, a
repulsive wall and conservative forces, and reaches the isolated-atom limit continuously).

For a pair A–B at distance r (atoms in vacuum, no periodicity):

    E(r) = E_AB(r) − E_A − E_B          relative to the two isolated atoms, E(∞) = 0
    F(r) = F_B · (x_B − x_A) / r        force on B along the bond, > 0 repulsive

sampled from `r_min` (0.5 Å) to past the cutoff, plus two points at r_c ∓ δ (δ = 1e-6 Å)
for the step at the cutoff. Metrics per pair:

    energy_jump_at_cutoff   E(r_c − δ) − E(r_c + δ) (eV): 0 for a smooth model; the official
                            HIENet invariant layer makes it finite
    force_at_cutoff         F(r_c − δ) (eV/Å)
    force_sign_flips        sign changes of F(r), ignoring |F| < 10 meV/Å (1 for a single well)
    r_min, e_min            position and depth of the lowest sampled energy below r_c
    e_short_range           E(r_min of the grid) (eV): large and positive for a repulsive wall
    spearman_repulsion      Spearman rank correlation of E with r for r < r_min (−1: E falls
                            monotonically on the wall)
    conservation_deviation  mean |F + dE/dr| (eV/Å), dE/dr by central differences
    tortuosity              Σ|ΔE| / (|E(r_0) − e_min| + |E(∞) − e_min|) (1: one clean well)
"""
from dataclasses import dataclass
from itertools import combinations
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from .predictor import Predictor

R_MIN = 0.5  # Å
STEP = 0.02  # Å
PAST_CUTOFF = 1.0  # Å sampled beyond the cutoff
CUTOFF_DELTA = 1e-6  # Å either side of the cutoff for the step
FORCE_TOLERANCE = 0.01  # eV/Å: smaller forces count as zero for sign flips
# Bond direction: a generic unit vector (no alignment with a Cartesian axis).
DIRECTION = np.array([1.0, 2.0, 2.0]) / 3.0
# Heteronuclear pairs used by default when a model has many species.
COMMON_PAIRS = [
    ("H", "C"), ("H", "N"), ("H", "O"), ("C", "N"), ("C", "O"), ("N", "O"), ("Si", "O"), ("Si", "C"),
    ("Al", "O"), ("Ti", "O"), ("Fe", "O"), ("Cu", "O"), ("Li", "F"), ("Na", "Cl"), ("Li", "O"), ("Ga", "As"),
]
ALL_HETERONUCLEAR_UP_TO = 8  # species; above this, COMMON_PAIRS found in the model


@dataclass
class PairCurve:
    pair: str                  # "A-B"
    r: np.ndarray              # (M,) Å
    energy: np.ndarray         # (M,) eV, relative to the isolated atoms
    force: np.ndarray          # (M,) eV/Å along the bond, > 0 repulsive
    energy_below_cutoff: float
    energy_above_cutoff: float
    force_below_cutoff: float


def default_pairs(species: Sequence[str]) -> List[Tuple[str, str]]:
    """Every homonuclear pair; every heteronuclear pair for up to 8 species, else COMMON_PAIRS."""
    homo = [(s, s) for s in species]
    if len(species) <= ALL_HETERONUCLEAR_UP_TO:
        return homo + list(combinations(species, 2))
    known = set(species)
    return homo + [p for p in COMMON_PAIRS if p[0] in known and p[1] in known]


def parse_pairs(text: str, species: Sequence[str]) -> List[Tuple[str, str]]:
    """'Si-Si,Na-Cl' → [('Si', 'Si'), ('Na', 'Cl')]; elements must be in the model."""
    pairs = []
    for item in text.split(","):
        parts = item.strip().split("-")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"pair {item.strip()!r} is not of the form A-B (e.g. Si-O)")
        missing = [p for p in parts if p not in species]
        if missing:
            raise ValueError(f"pair {item.strip()!r}: element(s) {', '.join(missing)} not in the model; "
                             f"it knows {', '.join(species)}")
        pairs.append((parts[0], parts[1]))
    return pairs


def dimer(a: str, b: str, r: float) -> Atoms:
    return Atoms([a, b], positions=[np.zeros(3), r * DIRECTION], pbc=False)


def sample_distances(cutoff: float, r_min: float = R_MIN, r_max: Optional[float] = None,
                     step: float = STEP) -> np.ndarray:
    r_max = cutoff + PAST_CUTOFF if r_max is None else r_max
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got r_min {r_min}, r_max {r_max}")
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    return np.arange(r_min, r_max + 0.5 * step, step)


def pair_curves(predictor: Predictor, pairs: Sequence[Tuple[str, str]], distances: np.ndarray,
                batch_size: int = 512, progress=None) -> Dict[str, PairCurve]:
    """Curves of every pair, all structures evaluated in batches."""
    rc = predictor.cutoff
    probe = [rc - CUTOFF_DELTA, rc + CUTOFF_DELTA]
    frames, layout = [], []
    for a, b in pairs:
        start = len(frames)
        frames += [Atoms([a], pbc=False), Atoms([b], pbc=False)]
        frames += [dimer(a, b, r) for r in list(distances) + probe]
        layout.append((a, b, start))
    predictions = predictor.predict(frames, batch_size=batch_size, progress=progress, source="pair structure")
    out = {}
    m = len(distances)
    for a, b, start in layout:
        isolated = predictions[start].energy + predictions[start + 1].energy
        dimers = predictions[start + 2:start + 4 + m]
        energy = np.array([p.energy for p in dimers]) - isolated
        force = np.array([float(p.forces[1] @ DIRECTION) for p in dimers])
        out[f"{a}-{b}"] = PairCurve(f"{a}-{b}", distances.copy(), energy[:m], force[:m],
                                    float(energy[m]), float(energy[m + 1]), float(force[m]))
    return out


def pair_metrics(curve: PairCurve, cutoff: float) -> Dict[str, float]:
    from scipy.stats import spearmanr

    r, e, f = curve.r, curve.energy, curve.force
    inside = r < cutoff
    k = int(np.argmin(np.where(inside, e, np.inf)))
    signs = np.sign(np.where(np.abs(f) < FORCE_TOLERANCE, 0.0, f))
    signs = signs[signs != 0]
    wall = slice(0, k + 1)
    spearman = float(spearmanr(r[wall], e[wall]).statistic) if k >= 2 else float("nan")
    dedr = np.gradient(e, r)
    variation = float(np.abs(np.diff(e)).sum())
    depth = abs(e[0] - e[k]) + abs(e[-1] - e[k])
    return {
        "energy_jump_at_cutoff": curve.energy_below_cutoff - curve.energy_above_cutoff,
        "force_at_cutoff": curve.force_below_cutoff,
        "force_sign_flips": int(np.count_nonzero(np.diff(signs))),
        "r_min": float(r[k]),
        "e_min": float(e[k]),
        "e_short_range": float(e[0]),
        "spearman_repulsion": spearman,
        "conservation_deviation": float(np.mean(np.abs(f + dedr))),
        "tortuosity": variation / depth if depth > 0 else float("nan"),
    }
