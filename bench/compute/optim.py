"""Optimiser, learning-rate schedule and mini-batch order shared by scoring and training.

SGD with momentum 0.9, Nesterov and weight decay 5e-4 under a per-step cosine schedule:
the setup of the PGD-AT/TRADES references and of the coreset papers compared here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from corebench.core.errors import invalid


def make_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    total_steps: int,
    schedule: str = "cosine",
    sgd: str = "for-loop",
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD plus a per-step schedule ('cosine' to zero, or 'constant').

    `sgd` picks torch's implementation: "for-loop" (one parameter at a time, the CPU default),
    "foreach" (grouped kernels) or "fused" (one kernel; the fast path's choice on CUDA)."""
    impl = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(sgd, {"foreach": False})
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay,
        **impl,
    )
    total = max(1, total_steps)
    if schedule == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    else:
        factor = lambda step: 1.0  # noqa: E731
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batch_order(indices: np.ndarray, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffled mini-batches of `indices`; every sample once per epoch.

    A last batch of one sample joins the batch before it: train-mode BatchNorm cannot
    normalise a single sample (ResNets end at 1×1 on small inputs), and dropping it would
    leave a sample without its signals in the scoring run.
    """
    perm = torch.randperm(len(indices), generator=generator).numpy()
    shuffled = np.asarray(indices)[perm]
    n = len(shuffled)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n
        yield shuffled[start:end]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of batches `batch_order` yields for n samples."""
    steps = max(1, math.ceil(n / batch_size))
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def resolve_device(name: str, where: str = "device") -> torch.device:
    """'auto' -> cuda when available, else cpu; a device that does not exist here is a
    one-line ConfigError (before any compute), not a failure in the first cell."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise invalid(where, name, "auto, cpu, cuda, cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise invalid(where, name, "auto or cpu (no CUDA device is visible here)")
        if device.index is not None and device.index >= count:
            raise invalid(where, name, f"cuda:0 to cuda:{count - 1} ({count} visible)")
    return device


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch threads (results on CPU depend on it: the grid fixes it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
