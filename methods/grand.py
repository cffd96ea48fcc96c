"""GraNd: keep the samples with the largest per-sample loss-gradient norm early in training.

Paper: Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet: Finding Important Examples
Early in Training", NeurIPS 2021. Reference implementation: github.com/mansheej/data_diet,
`data_diet/scores.py` (`get_grad_norm_fn`: ‖∂ CE / ∂θ‖₂ over the flattened Jacobian of ALL
parameters, test-mode apply function, un-augmented train set) with `scripts/get_run_score.py`
at a chosen checkpoint (step 0 = initialisation) and `scripts/get_mean_score.py` averaging runs.
DeepCore (PatrickZH/DeepCore `deepcore/methods/grand.py`) instead takes the closed-form norm of
the last layer's gradient after a few training epochs, averaged over `repeat=10` runs.

The scoring run records the norms at the epochs of `scoring.snapshot_epochs` (rows of
`grand_all` / `grand_last`) and the epochs themselves as `snapshot_epochs`; `epoch` picks the
row by its epoch value.

Options where references disagree (default first, with its source):
- `params`: "all" (data_diet: every parameter) or "last_layer" (DeepCore: classifier only,
  closed form, far cheaper).
- `epoch`: 0, at initialisation (the paper's GraNd at init); any epoch listed in
  `scoring.snapshot_epochs` can be chosen (DeepCore scores after training epochs).
- `n_runs`: averaged over the first n scoring runs, each with its own seed; default 1 (cheap
  and explicit); data_diet averages runs (its README: "at least 10 runs") and DeepCore
  `repeat=10`: the paper grids set 10. At `epoch` 0 a run trains no step at all
  (`scoring_epochs`), unless another method sharing it needs more.
- `direction`: "hardest" (keep the largest norms, the paper) or "easiest".
- `class_balanced`: global keep (the paper and DeepCore's default) or per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.methods._common import mean_over_runs, snapshot_epochs, snapshot_row
from corebench.methods.base import Direction, Epoch, RunCount, ScoreBasedMethod, SelectionContext
from corebench.methods.registry import register_method


@dataclass(frozen=True)
class GraNdParams:
    params: Literal["all", "last_layer"] = "all"
    epoch: Epoch = 0
    direction: Direction = "hardest"
    class_balanced: bool = False
    n_runs: RunCount = 1


@register_method("grand")
class GraNd(ScoreBasedMethod):
    """Keep the samples with the largest per-sample gradient norm at an early epoch."""

    reference = "Paul et al. 2021, mansheej/data_diet"

    Params = GraNdParams
    class_balanced_source = "off: the paper's global ranking and DeepCore `grand.py` (`balance=False` by default)"
    reference_budget = "steps: mansheej/data_diet trains every pruned set for the same 78,000 steps (200 × 390)"
    signals = ("grand_all",)

    def required_signals(self) -> tuple[str, ...]:
        return ("grand_all",) if self.params.params == "all" else ("grand_last",)

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        """Up to the snapshot read: 0 (no training step) at initialisation."""
        return min(self.params.epoch, epochs)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        name = self.required_signals()[0]
        rows = []
        for r, norms in enumerate(ctx.signal_runs(name, self.params.n_runs)):
            rows.append(norms[self._row(ctx.runs[r], norms.shape[0])])
        return mean_over_runs(rows)

    def _row(self, run, n_rows: int) -> int:
        """The row of the GraNd signal taken at `params.epoch`."""
        return snapshot_row(self.name, snapshot_epochs(self.name, run, n_rows), self.params.epoch)
