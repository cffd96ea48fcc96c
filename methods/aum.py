"""AUM: rank samples by their area under the margin (Pleiss et al. 2020).

Paper: Pleiss, Zhang, Elenberg & Weinberger, "Identifying Mislabeled Data using the Area Under
the Margin Ranking", NeurIPS 2020. Reference: github.com/asappresearch/aum, `aum/aum.py`
(`AUMCalculator.update`: at every training step, margin = logit of the assigned class − the
largest other logit; AUM = the margin averaged over the records of a sample). corebench reads
`margin_logits` [E, N] (the training pass, one record per sample and epoch) and averages it.

Options (default first):
- `direction`: "easiest" keeps the highest AUM, as the paper uses it: low-AUM samples are the
  likely mislabeled ones it removes. "hardest" keeps the lowest AUM, as a pruning score for
  hard samples (CCS's stratification uses −AUM as hardness: methods/ccs.py).
- `margin_on`: "logits" (the paper's and the reference's); "probs" (the CCS reference's
  `accumulated_margin`, on softmax probabilities); "adversarial": the margin on each step's
  adversarial example in eval mode (`adv_margin`), AUM under attack (corebench's variant, no
  reference).
- `n_runs`: AUM averaged over the first n scoring runs (default 1, as the reference).
- `scoring_regime`: "grid" (the grid's `scoring.regime`) or a regime of its own.
- `class_balanced`: global by default (the reference ranks all samples together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

MARGIN_SIGNAL = {"logits": "margin_logits", "probs": "margin_probs", "adversarial": "adv_margin"}


@dataclass(frozen=True)
class AUMParams:
    direction: Direction = "easiest"
    margin_on: Literal["logits", "probs", "adversarial"] = "logits"
    class_balanced: bool = False
    n_runs: RunCount = 1
    scoring_regime: ScoringRegime = "grid"


@register_method("aum")
class AUM(ScoreBasedMethod):
    """Hardness −AUM: the margin z_y − max_{k≠y} z_k averaged over the scoring epochs."""

    reference = "Pleiss et al. 2020, asappresearch/aum"

    Params = AUMParams
    class_balanced_source = "off: asappresearch/aum ranks all samples together"
    reference_budget = "UNVERIFIED: asappresearch/aum flags mislabelled samples; the budget of its retraining was not read"
    signals = ("margin_logits",)
    in_all = False

    def required_signals(self) -> tuple[str, ...]:
        return (MARGIN_SIGNAL[self.params.margin_on],)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        runs = ctx.signal_runs(self.required_signals()[0], self.params.n_runs)
        return -mean_over_runs([r.mean(axis=0, dtype=np.float64) for r in runs])
