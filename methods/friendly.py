"""Friendly: keep the samples PGD misclassifies in the fewest epochs of an adversarial training run.

Paper: Dong, Liu & Shang, "Data Profiling for Adversarial Training: On the Ruin of Problematic
Data", arXiv 2102.07437 (2021). Reference: github.com/shwinshaker/RobustDataProfiling (MIT),
`src/utils/tracker.py` (`ExampleTracker.count_wrong`: per sample, the number of epochs in which
the model misclassified its adversarial example) fed from `src/adversary/defender.py`
(`AdTrainer._ad_loss`). Their released ranking `prob_rank.npy` averages the count over 10
runs; their released subsets `data_subsets/id_friend_25000_balance.npy` (kept) and
`id_problem_25000_balance.npy` (removed) take the 25,000 lowest / highest per class.

corebench reads `adv_correct` [E, N] from the scoring run (signal registry: the model in eval
mode on each training step's adversarial example, before the update) and scores each sample by
Σₑ ¬adv_correct, its count of PGD-misclassified epochs.

Options, and where corebench and the reference differ (default first):
- `scoring_regime`: "pgd_at" — the reference profiles a PGD-AT run; "trades" or "standard"
  (a PGD example made for the signal) are variants; "grid" follows `scoring.regime`.
- `direction`: "easiest" keeps the lowest counts (the "friendly" samples, the paper's
  proposal); "hardest" keeps the "problematic" ones.
- `class_balanced`: False ranks all samples together; True keeps per class, as the released
  25k subsets do (`_balance`).
- `n_runs`: counts averaged over the first n scoring runs (default 1; the released ranking
  averages 10).
- The reference counts on the training forward's outputs (train mode) under PGD-AT, with its
  attack made in eval mode; corebench's PGD-AT attacks in train mode (Rice et al., as
  `corebench.compute.train`) and reads the example in eval mode (as the reference does under TRADES,
  `__get_pgd_ad`). Under TRADES the reference re-attacks with PGD for the count; corebench
  reads TRADES's own adversary. How much either changes the ranking is UNVERIFIED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corebench.methods._common import mean_over_runs
from corebench.methods.base import (
    Direction,
    RunCount,
    ScoreBasedMethod,
    ScoringRegime,
    SelectionContext,
)
from corebench.methods.registry import register_method


def misclassified_epochs(adv_correct: np.ndarray) -> np.ndarray:
    """Dong et al.'s count: epochs in which a sample's adversarial example was misclassified [N]."""
    return (~np.asarray(adv_correct, dtype=bool)).sum(axis=0, dtype=np.int64)


@dataclass(frozen=True)
class FriendlyParams:
    scoring_regime: ScoringRegime = "pgd_at"
    direction: Direction = "easiest"
    class_balanced: bool = False
    n_runs: RunCount = 1


@register_method("friendly")
class Friendly(ScoreBasedMethod):
    """Keep the samples misclassified under PGD in the fewest epochs (Dong et al. 2021)."""

    reference = "Dong et al. 2021, shwinshaker/RobustDataProfiling"

    Params = FriendlyParams
    class_balanced_source = "off: a global ranking of the counts (UNVERIFIED); the released 25k subsets of shwinshaker/RobustDataProfiling are class-balanced (`_balance`)"
    reference_budget = "UNVERIFIED: not read from shwinshaker/RobustDataProfiling"
    signals = ("adv_correct",)
    in_all = False

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        runs = ctx.signal_runs("adv_correct", self.params.n_runs)
        return mean_over_runs([misclassified_epochs(r) for r in runs])
