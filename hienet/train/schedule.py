"""Learning-rate schedule: linear warm-up, then cosine decay (stepped once per batch).

    factor(s) = f_w + (1 − f_w) · s / S_w                                   s < S_w
    factor(s) = f_min + (1 − f_min) · ½ (1 + cos(π (s − S_w) / (S − S_w)))  S_w ≤ s ≤ S

with S the total number of optimisation steps, S_w = round(warmup_fraction · S),
f_w = warmup_factor and f_min = lr_min_factor; lr(s) = lr · factor(s).
"""
import math

import torch


def lr_factor(step: int, total_steps: int, warmup_fraction: float, warmup_factor: float,
              lr_min_factor: float) -> float:
    warmup = int(round(warmup_fraction * total_steps))
    if step < warmup:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return lr_min_factor + (1.0 - lr_min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1,
                  warmup_factor: float = 0.2, lr_min_factor: float = 0.0005):
    """A LambdaLR over `total_steps`; its state dict holds only step counters and base lrs."""
    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup_fraction, warmup_factor, lr_min_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
