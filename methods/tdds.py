"""TDDS: Temporal Dual-Depth Scoring (Zhang, Du, Li, Xie & Zhou, "Spanning Training Progress:
Temporal Dual-Depth Scoring (TDDS) for Enhanced Dataset Pruning", CVPR 2024).

Reference: github.com/zhangxin-xd/Dataset-Pruning-TDDS, `importance_evaluation.py`
(`generate`) on the per-epoch outputs `train.py` saves (`output_epoch`: the training pass's
logits, train mode, augmented), and `data_subset.py` (keeps `data_mask[subset_rate·N:]`, the
highest scores). With pₑ the softmax of epoch e's logits:

    kdₑ    = Σ_c | pₑ₊₁,c · (log(pₑ₊₁,c + 1e-8) − log(pₑ,c + 1e-8)) |     (first depth)
    for each window k of W epochs (k = 0 … T−W):
        s_k = ‖ kd_{k..k+W−2} − their mean ‖₂                            (second depth)
    score = Σ_k s_k · β (1 − β)^(T−W−k)                                   (moving average)

corebench reads `logits_train` [E, N, C] (float16 logits of the training pass).

Options (default first):
- `window`: W = 10, `decay`: β = 0.9 (the reference's argparse defaults).
- `trajectory`: T, the first T scoring epochs (None: all E; the reference's default is 10, its
  README runs 30 with W = 10). The scoring run needs at least W epochs.
- `direction`: "hardest" keeps the highest scores (the reference); "easiest" the lowest.
- `class_balanced`, `n_runs` (scores averaged over runs), `scoring_regime`: as every
  score-based method; the reference keeps globally, from one run.
The reference's `train.py` skips saving the first epoch's outputs (the folder is made then),
which `importance_evaluation.py` then expects; corebench records every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from corebench.core.errors import MethodError
from corebench.methods._common import mean_over_runs, softmax
from corebench.methods.base import (
    Direction,
    PositiveCount,
    RunCount,
    ScoreBasedMethod,
    ScoringRegime,
    SelectionContext,
)
from corebench.methods.registry import register_method

Decay = Annotated[float, Field(gt=0.0, lt=1.0)]


def tdds_scores(logits: np.ndarray, window: int, decay: float) -> np.ndarray:
    """The TDDS score [N] from per-epoch logits [T, N, C] (see the module doc)."""
    t = logits.shape[0]
    if window < 2 or t < window:
        raise ValueError(f"needs a window of at least 2 epochs and at least as many epochs as the window "
                         f"({t} epochs, window {window})")
    p = softmax(logits)  # float64
    log_p = np.log(p + 1e-8)
    kd = np.abs(p[1:] * (log_p[1:] - log_p[:-1])).sum(axis=2)  # [T−1, N]
    score = np.zeros(logits.shape[1])
    for k in range(t - window + 1):
        part = kd[k : k + window - 1]
        spread = np.linalg.norm(part - part.mean(axis=0), axis=0)
        score += spread * decay * (1 - decay) ** (t - window - k)
    return score


@dataclass(frozen=True)
class TDDSParams:
    window: PositiveCount = 10
    decay: Decay = 0.9
    trajectory: PositiveCount | None = None
    direction: Direction = "hardest"
    class_balanced: bool = False
    n_runs: RunCount = 1
    scoring_regime: ScoringRegime = "grid"


@register_method("tdds")
class TDDS(ScoreBasedMethod):
    """Keep the samples whose predictions change most unevenly across the training trajectory."""

    reference = "Zhang et al. 2024, zhangxin-xd/Dataset-Pruning-TDDS"

    Params = TDDSParams
    class_balanced_source = "off: zhangxin-xd/Dataset-Pruning-TDDS keeps globally"
    reference_budget = "UNVERIFIED: not read from zhangxin-xd/Dataset-Pruning-TDDS"
    signals = ("logits_train",)
    in_all = False

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        return epochs if self.params.trajectory is None else min(epochs, self.params.trajectory)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        per_run = []
        for logits in ctx.signal_runs("logits_train", self.params.n_runs):
            t = logits.shape[0] if self.params.trajectory is None else self.params.trajectory
            try:
                per_run.append(tdds_scores(np.asarray(logits)[:t], self.params.window, self.params.decay))
            except ValueError as exc:
                raise MethodError(f"method {self.name!r}: {exc}; set scoring.epochs to at least the window or a "
                                  f"smaller `window`") from exc
        return mean_over_runs(per_run)
