"""Optimiser, learning-rate schedule and mini-batch order shared by scoring and training.

SGD with momentum 0.9, Nesterov and weight decay 5e-4 under a per-step cosine schedule:
the setup of the PGD-AT/TRADES references and of the coreset papers compared here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch


def make_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    total_steps: int,
    schedule: str = "cosine",
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD plus a per-step schedule ('cosine' to zero, or 'constant')."""
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
    )
    total = max(1, total_steps)
    if schedule == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batch_order(indices: np.ndarray, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffled mini-batches of `indices` (the last one may be smaller; never empty)."""
    perm = torch.randperm(len(indices), generator=generator).numpy()
    shuffled = np.asarray(indices)[perm]
    for start in range(0, len(shuffled), batch_size):
        yield shuffled[start : start + batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
