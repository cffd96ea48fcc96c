"""Flip gap: keep the samples whose loss grows most when the image is mirrored.

An example of a plug-in method, not a published one: it reads a built-in signal (`loss_eval`)
and this package's own (`flip_loss_eval`), at the last snapshot epoch of the scoring run.

Options (default first):
- `direction`: "hardest" keeps the largest gaps (mirror-sensitive samples), "easiest" the smallest.
- `class_balanced`: False ranks all samples together; True keeps exact per-class budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corebench.methods import ScoreBasedMethod, SelectionContext, register_method
from corebench.methods.base import Direction


@dataclass(frozen=True)
class FlipGapParams:
    direction: Direction = "hardest"
    class_balanced: bool = False


@register_method("flip_gap")
class FlipGap(ScoreBasedMethod):
    """Keep the samples whose loss grows most when the image is mirrored."""

    Params = FlipGapParams
    signals = ("loss_eval", "flip_loss_eval")  # what the scoring run must record

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        flipped = ctx.signals["flip_loss_eval"][-1].astype(np.float64)  # [K, N] -> last snapshot
        plain = ctx.signals["loss_eval"][-1].astype(np.float64)
        return flipped - plain
