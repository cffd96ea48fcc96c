"""EL2N: keep the samples with the largest error-vector norm early in training.

Paper: Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet: Finding Important Examples
Early in Training", NeurIPS 2021. Reference implementation: github.com/mansheej/data_diet,
`data_diet/scores.py` (`get_lord_error_fn`: ‖softmax(f(x)) − onehot(y)‖₂ with the test-mode
apply function on the un-augmented train set, `scripts/get_run_score.py` at one checkpoint,
`scripts/get_mean_score.py` averaging runs). The CCS reference
(haizhongzheng/Coverage-centric-coreset-selection `generate_importance_score.py`, `EL2N`)
sums the training-pass EL2N over the first 10 epochs instead; DeepCore has no EL2N.

Options where references disagree (default first, with its source):
- `epoch`: the scoring epoch whose EL2N is used. None means 10 % into training, the paper's
  epoch 20 of 200: with `score_pass: eval` the first snapshot epoch after 0 (by default
  `scoring.snapshot_epochs` is (0, ⌈0.1·E⌉)); with `score_pass: train`, ⌈0.1·E⌉ (at least 1).
  corebench's scoring runs are shorter than 200 epochs, so the epoch scales with them.
- `score_pass` (the brief's `pass`, a Python keyword): "eval" reads `el2n_eval` (eval mode,
  un-augmented inputs, at the snapshot epochs — the data_diet reference scores one checkpoint
  this way); "train" reads `el2n`
  from the training pass (augmented, train mode — what the CCS reference logs).
- `n_runs`: EL2N averaged over the first n scoring runs, each with its own seed. Default 1
  (cheap and explicit); the data_diet README recommends "at least 10 runs" and the paper grids
  set 10. A run trains only up to the epoch read (`scoring_epochs`): EL2N at epoch 20 of a
  200-epoch schedule trains 20 epochs, unless another method sharing the run needs more.
- `direction`: "hardest" (keep the largest EL2N, the paper) or "easiest".
- `class_balanced`: global keep (the paper) or per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from corebench.core.errors import MethodError
from corebench.core.spec import default_snapshot_epoch
from corebench.methods._common import mean_over_runs, snapshot_epochs, snapshot_row
from corebench.methods.base import Direction, RunCount, ScoreBasedMethod, SelectionContext
from corebench.methods.registry import register_method


@dataclass(frozen=True)
class EL2NParams:
    epoch: Annotated[int, Field(ge=1)] | None = None  # None: 10 % into training
    score_pass: Literal["eval", "train"] = "eval"
    direction: Direction = "hardest"
    class_balanced: bool = False
    n_runs: RunCount = 1


@register_method("el2n")
class EL2N(ScoreBasedMethod):
    """Keep the samples with the largest ‖softmax − onehot‖₂ at an early epoch."""

    reference = "Paul et al. 2021, mansheej/data_diet"

    Params = EL2NParams
    class_balanced_source = "off: mansheej/data_diet keeps the top scores over the whole train set (global pruning, Paul et al. 2021)"
    reference_budget = "steps: mansheej/data_diet trains every pruned set for the same 78,000 steps (200 × 390)"
    signals = ("el2n_eval",)

    def required_signals(self) -> tuple[str, ...]:
        return ("el2n_eval",) if self.params.score_pass == "eval" else ("el2n",)

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        """The epoch read: a run needs no more (a missing snapshot fails at selection)."""
        if self.params.epoch is not None:
            return min(self.params.epoch, epochs)
        if self.params.score_pass == "train":
            return default_snapshot_epoch(epochs)
        later = [e for e in snapshots if e > 0]
        return min(later[0], epochs) if later else epochs

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        runs = ctx.signal_runs(self.required_signals()[0], self.params.n_runs)
        if self.params.score_pass == "eval":
            return mean_over_runs([r[self._snapshot_row(ctx.runs[i], r.shape[0])] for i, r in enumerate(runs)])
        n_epochs = runs[0].shape[0]
        schedule = ctx.scoring_epochs if ctx.scoring_epochs is not None else n_epochs
        epoch = self.params.epoch if self.params.epoch is not None else default_snapshot_epoch(schedule)
        if epoch > n_epochs:
            raise MethodError(
                f"method {self.name!r}: epoch {epoch} is not recorded; the scoring run has epochs 1..{n_epochs}"
            )
        return mean_over_runs([r[epoch - 1] for r in runs])

    def _snapshot_row(self, run, n_rows: int) -> int:
        """The `el2n_eval` row at `epoch` (default: the first snapshot after initialisation)."""
        epochs = snapshot_epochs(self.name, run, n_rows)
        epoch = self.params.epoch
        if epoch is None:
            later = [e for e in epochs if e > 0]
            if not later:
                raise MethodError(f"method {self.name!r}: scoring.snapshot_epochs has no epoch after 0; recorded: {epochs}")
            epoch = later[0]
        return snapshot_row(self.name, epochs, epoch)
