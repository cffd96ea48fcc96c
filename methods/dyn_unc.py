"""Dynamic Uncertainty: keep the samples whose predicted probability of their label moves most
over training (He, Yang, Zhu, Zhu, Luo & Cheng, "Large-scale Dataset Pruning with Dynamic
Uncertainty", CVPR 2023 workshops).

For each window of J consecutive epochs, the uncertainty of sample i is the standard deviation
(ddof 1) of its probability of its label over the window; the score is the mean over windows.
Reference read: Nieth et al. 2024, github.com/BjoernNieth/LS-Dataset-pruning-in-AT,
`core/data/dynamic_uncertainty.py` (`pruneDataset`), which applies it to adversarial training,
on clean or adversarial predictions (`use_adversarial_predictions`), J = 10 "from Dynamic
Uncertainty paper", and prunes the lowest scores (keeps the highest). He et al.'s own code
could not be found: UNVERIFIED against it.

corebench's probability of the label per epoch is exp(−CE) of a signal the scoring run records
per sample and epoch: `loss` (the training pass; under PGD-AT that pass is on the adversarial
example) for "clean", `adv_loss` (eval mode on each step's adversarial example) for
"adversarial". Nieth et al. record their predictions in a pass whose mode is UNVERIFIED.

Options (default first):
- `window`: J = 10 (He et al., as quoted by Nieth et al.). The scoring run needs more epochs
  than J; a shorter run fails the cell with a message saying so.
- `windows`: "k_minus_j" — the windows starting at epochs 0 … K−J−1 (Nieth et al.'s
  `range(0, K - J)`, which leaves out the window ending at the last epoch); "all" — every full
  window, K−J+1 of them (the paper's sum, as far as UNVERIFIED).
- `predictions`: "clean" or "adversarial" (Nieth et al.'s two variants).
- `direction`: "hardest" keeps the most uncertain (both); "easiest" the least.
- `class_balanced`: False (Nieth et al.'s default `keep_class_distribution=False`); True keeps
  per class.
- `n_runs`, `scoring_regime`: as every score-based method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.core.errors import MethodError
from corebench.methods._common import mean_over_runs
from corebench.methods.base import (
    Direction,
    PositiveCount,
    RunCount,
    ScoreBasedMethod,
    ScoringRegime,
    SelectionContext,
)
from corebench.methods.registry import register_method


def dynamic_uncertainty(p: np.ndarray, window: int, windows: str = "k_minus_j") -> np.ndarray:
    """Mean over sliding windows of J epochs of the std (ddof 1) of p [K, N] over each window."""
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[0]
    count = k - window + (1 if windows == "all" else 0)
    if window < 2 or count < 1:
        raise ValueError(f"needs a window of at least 2 epochs and more epochs than the window "
                         f"({k} epochs, window {window}, windows {windows!r})")
    stds = [p[i : i + window].std(axis=0, ddof=1) for i in range(count)]
    return np.mean(stds, axis=0)


@dataclass(frozen=True)
class DynUncParams:
    window: PositiveCount = 10
    windows: Literal["k_minus_j", "all"] = "k_minus_j"
    predictions: Literal["clean", "adversarial"] = "clean"
    direction: Direction = "hardest"
    class_balanced: bool = False
    n_runs: RunCount = 1
    scoring_regime: ScoringRegime = "grid"


@register_method("dyn_unc")
class DynUnc(ScoreBasedMethod):
    """Keep the samples whose probability of their label fluctuates most across epochs."""

    reference = "He et al. 2023; Nieth et al. 2024, BjoernNieth/LS-Dataset-pruning-in-AT"

    Params = DynUncParams
    class_balanced_source = "off: BjoernNieth/LS-Dataset-pruning-in-AT `keep_class_distribution=False` by default"
    reference_budget = "UNVERIFIED: not read from BjoernNieth/LS-Dataset-pruning-in-AT"
    signals = ("loss",)
    in_all = False

    def required_signals(self) -> tuple[str, ...]:
        return ("loss",) if self.params.predictions == "clean" else ("adv_loss",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        per_run = []
        for losses in ctx.signal_runs(self.required_signals()[0], self.params.n_runs):
            try:
                per_run.append(dynamic_uncertainty(np.exp(-np.asarray(losses, dtype=np.float64)),
                                                   self.params.window, self.params.windows))
            except ValueError as exc:
                raise MethodError(f"method {self.name!r}: {exc}; set scoring.epochs above the window or a "
                                  f"smaller `window`") from exc
        return mean_over_runs(per_run)
