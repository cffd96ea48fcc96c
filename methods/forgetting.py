"""Forgetting: keep the samples forgotten most often during training.

Paper: Toneva et al., "An Empirical Study of Example Forgetting during Deep Neural Network
Learning", ICLR 2019. Reference implementation: github.com/mtoneva/example_forgetting,
`order_examples_by_forgetting.py` (`compute_forgetting_statistics`,
`sort_examples_by_forgetting`). A forgetting event is a 1→0 transition of "prediction
correct" between consecutive presentations of a sample; the score is the number of events.
Reads the `correct` signal [E, N] (training pass, as the reference records it per minibatch
presentation).

Options where references disagree (default first, with its source):
- `never_learned`: "most_forgotten" — a sample never classified correctly in a run counts as
  forgotten `E` times in that run (the reference adds `npresentations`), which ranks it above
  every learned sample since E epochs allow at most ⌊E/2⌋ events. "zero": it counts 0, as in
  DeepCore (PatrickZH/DeepCore `deepcore/methods/forgetting.py`) and the CCS reference, which
  only ever count 1→0 transitions.
- `direction`: "hardest" (keep the most forgotten, the paper: unforgettable examples can be
  removed) or "easiest".
- `n_runs`: forgetting counts averaged over the first n scoring runs, each with its own seed
  (the reference sums over runs, which ranks the same). Default 1 (cheap and explicit); the
  reference README collects 5 runs ("s ranges from 1 to 5") and the paper grids set 5.
  Counts are integers, so ties at the selection boundary are common: they are broken at
  random from the cell's seed (`_common.rank`), not by index.
- `class_balanced`: global keep by default (the reference); DeepCore keeps per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.methods._common import forgetting_counts, mean_over_runs
from corebench.methods.base import Direction, RunCount, ScoreBasedMethod, SelectionContext
from corebench.methods.registry import register_method


@dataclass(frozen=True)
class ForgettingParams:
    never_learned: Literal["most_forgotten", "zero"] = "most_forgotten"
    direction: Direction = "hardest"
    class_balanced: bool = False
    n_runs: RunCount = 1


@register_method("forgetting")
class Forgetting(ScoreBasedMethod):
    """Keep the most forgotten samples (1→0 transitions of correctness across epochs)."""

    reference = "Toneva et al. 2019, mtoneva/example_forgetting"

    Params = ForgettingParams
    class_balanced_source = "off: mtoneva/example_forgetting sorts all examples together (DeepCore's `main.py` runs per class)"
    reference_budget = "epochs: mtoneva/example_forgetting `run_cifar.py --epochs 200`"
    randomness = "integer forgetting counts tie often; ties at the boundary are broken by the seed"
    signals = ("correct",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        per_run = []
        for correct in ctx.signal_runs("correct", self.params.n_runs):
            counts, learned = forgetting_counts(correct)
            scores = counts.astype(np.float64)
            if self.params.never_learned == "most_forgotten":
                scores[~learned] = correct.shape[0]  # the reference's npresentations
            per_run.append(scores)
        return mean_over_runs(per_run)
