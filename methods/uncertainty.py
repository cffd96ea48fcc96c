"""Uncertainty: keep the samples the scoring model is least sure about (entropy, least
confidence, margin of its class probabilities).

References: DeepCore (Guo, Zhao & Bai, "DeepCore: A Comprehensive Library for Coreset Selection
in Deep Learning", DEXA 2022), github.com/PatrickZH/DeepCore at 74ec709 (2023-02-27),
`deepcore/methods/uncertainty.py`; and Coleman et al., "Selection via Proxy: Efficient Data
Selection for Deep Learning", ICLR 2020, github.com/stanford-futuredata/selection-via-proxy,
`svp/common/selection/__init__.py` (`select`). Both score the model in eval mode on the
un-augmented train set after a training run on the full data; corebench reads the scoring
run's `logits_final` (or `logits_eval` at a snapshot epoch) and takes the softmax in float64.

Scores, as hardness (higher = more uncertain):
- "entropy": −Σₖ pₖ log(pₖ + 1e-6), DeepCore's `Entropy` (uncertainty.py l.74-76; it stores
  the negative, Σ p·log(p + 1e-6)). Coleman's `entropy` is the same without the 1e-6.
- "least_confidence": −maxₖ pₖ on softmax probabilities, Coleman's `least_confidence`
  (`probs = preds.max(axis=1)`, ranked ascending).
- "max_logit": −maxₖ zₖ on raw logits, DeepCore's `LeastConfidence` (uncertainty.py l.72-73:
  `model(x).max(axis=1).values`, no softmax).
- "margin": −(p₍₁₎ − p₍₂₎), the gap between the two largest probabilities, DeepCore's `Margin`
  (l.77-84). Coleman's code has no margin.

Options where the references disagree (default first, with its source and why):
- which end is kept, `direction`: "hardest" keeps the MOST uncertain samples. Coleman's SVP
  keeps the most uncertain ("hard") points for core-set selection (least confidence ascending,
  entropy descending, `ranked[:budget]`), and so does DeepCore as its `main.py` runs it
  (`--balance` defaults to True, and the balanced branch of `finish_run`, l.48-52, takes
  `np.argsort(scores)[:k]`, the lowest confidence / entropy score / margin). DeepCore's class
  default `balance=False` takes `np.argsort(scores)[::-1][:k]` (l.55) instead, the MOST
  confident: the two branches keep opposite ends (and an earlier revision, 4312342 of
  2021-11-21, negated the max logit and sorted both branches descending). corebench defaults
  to the end both references' documented runs keep; "easiest" reproduces DeepCore's
  `balance=False` branch.
- `score`: "entropy", DeepCore `main.py`'s `--uncertainty` default ("Entropy"); the
  `Uncertainty` class defaults to "LeastConfidence" and Coleman's `coreset()` to
  `least_confidence`. For least confidence the two disagree on the quantity (max logit vs max
  probability); both are offered, as "max_logit" (DeepCore) and "least_confidence" (Coleman).
- `class_balanced`: False ranks all samples together (Coleman; DeepCore's class default).
  DeepCore's `main.py` runs balanced (per class, `round(n_c × fraction)` each, so its total
  can differ from round(N × fraction)); True here keeps per class with exact budgets that sum
  to round(N × fraction).
- `epoch`: None scores the final scoring model (both references score the model after their
  selection training: DeepCore `main.py` 40 epochs `--selection_epochs`, Coleman 181); an
  epoch listed in `scoring.snapshot_epochs` scores that snapshot instead.
- `n_runs`: the score averaged over the first n scoring runs, each with its own seed. Default 1:
  both references score one trained model.
- Coleman's proxy scores the train set with augmentation on (`svp/cifar/coreset.py`
  l.142-143); corebench scores un-augmented inputs, as DeepCore does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.methods._common import mean_over_runs, snapshot_epochs, snapshot_row, softmax
from corebench.methods.base import Direction, Epoch, RunCount, ScoreBasedMethod, SelectionContext
from corebench.methods.registry import register_method

ENTROPY_EPS = 1e-6  # DeepCore's log(p + 1e-6)


def uncertainty_scores(logits: np.ndarray, score: str) -> np.ndarray:
    """Hardness [N] from logits [N, C]: higher = more uncertain (see the module docstring)."""
    z = np.asarray(logits, dtype=np.float64)
    if score == "max_logit":
        return -z.max(axis=1)
    p = softmax(z)
    if score == "entropy":
        return -(p * np.log(p + ENTROPY_EPS)).sum(axis=1)
    if score == "least_confidence":
        return -p.max(axis=1)
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]  # every dataset has at least 2 classes
    return -(top2[:, 1] - top2[:, 0])


@dataclass(frozen=True)
class UncertaintyParams:
    score: Literal["entropy", "least_confidence", "max_logit", "margin"] = "entropy"
    direction: Direction = "hardest"  # most uncertain
    class_balanced: bool = False
    epoch: Epoch | None = None  # None: the final scoring model
    n_runs: RunCount = 1


@register_method("uncertainty")
class Uncertainty(ScoreBasedMethod):
    """Keep the samples with the most uncertain predictions (entropy, least confidence, margin)."""

    reference = "Coleman et al. 2020; PatrickZH/DeepCore"

    Params = UncertaintyParams
    class_balanced_source = "off: Coleman et al. SVP ranks all samples together (DeepCore's class default `balance=False`)"
    reference_budget = "epochs: DeepCore `main.py --epochs` (default 200)"
    signals = ("logits_final",)

    def required_signals(self) -> tuple[str, ...]:
        return ("logits_final",) if self.params.epoch is None else ("logits_eval",)

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        """A snapshot needs the run only up to its epoch; the final model needs all of it."""
        return epochs if self.params.epoch is None else min(self.params.epoch, epochs)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        scores = []
        for i, logits in enumerate(ctx.signal_runs(self.required_signals()[0], self.params.n_runs)):
            if self.params.epoch is not None:
                epochs = snapshot_epochs(self.name, ctx.runs[i], logits.shape[0])
                logits = logits[snapshot_row(self.name, epochs, self.params.epoch)]
            scores.append(uncertainty_scores(logits, self.params.score))
        return mean_over_runs(scores)
