"""EasyCore: keep the samples with the lowest average input-gradient norm (AIGN).

Paper: Ramesh, Roy, Ravikumar, Roy & Srinivasan, "The Easy Path to Robustness: Coreset
Selection using Sample Hardness", arXiv 2510.11018 (2025). Its abstract defines hardness as
"the average input gradient norm (AIGN) over training" and keeps "only the samples with low
AIGN". corebench computes AIGN_i = (1/E) Σ_e ‖∇ₓ CE(f_e(x_i), y_i)‖₂ over the E epochs of a
scoring run on the full data. Only the abstract could be read: the paper's body (eval or
train mode, which epochs are averaged, the scoring run's length, how many runs) is
UNVERIFIED, and no public code exists; corebench is the reference implementation.

Options where a reading of the paper leaves room (default first):
- `gradient_pass`: "eval" — the exact per-sample gradient ∇ₓ ℓ(xᵢ, yᵢ) of each sample alone,
  as the abstract defines AIGN: an eval-mode pass on un-augmented inputs after every epoch
  (signal `input_grad_norm_eval`; parameters without gradients, large batches; its cost as a
  ratio to a training epoch is in benchmarks/README.md). "train" takes the input gradient in
  the training step's own backward (signal `input_grad_norm`, nearly free), where train-mode
  BatchNorm couples the samples of a batch (∇ₓᵢ Σⱼ CEⱼ) and the inputs are augmented. Measured
  agreement of the two on the same scoring run (issue 8's author: 8,000 CIFAR-10 images of the
  shared test file, a narrow timm ResNet, 10-epoch scoring runs): Spearman 0.90, overlap of the
  lowest-10 % sets 0.74, of the lowest-30 % sets 0.81; corebench's own re-measurement is in
  benchmarks/README.md.
- `n_runs`: AIGN averaged over the first n scoring runs, each with its own seed (default 1;
  the paper's count is UNVERIFIED: the paper grids use 10, EL2N's reference count). AIGN reads
  every epoch, so each run trains the whole scoring schedule.
- `direction`: "easiest" (the paper) or "hardest", so boards can test whether easiness is
  what matters.
- `class_balanced`: the paper keeps globally (as far as the abstract says); per-class keeps
  are an option.
- `scoring_regime`: "grid" — the grid's `scoring.regime` (standard by default). The paper's AIGN
  is taken from a standard training run, as far as its abstract says; "trades" or "pgd_at"
  measures AIGN on an adversarially trained proxy (a variant a grid can name, e.g.
  `{name: easycore, scoring_regime: trades, id: easycore_trades}`; corebench's, no reference).
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


@dataclass(frozen=True)
class EasyCoreParams:
    gradient_pass: Literal["eval", "train"] = "eval"
    direction: Direction = "easiest"
    class_balanced: bool = False
    n_runs: RunCount = 1
    scoring_regime: ScoringRegime = "grid"


@register_method("easycore")
class EasyCore(ScoreBasedMethod):
    """Keep the samples with the lowest average input-gradient norm (AIGN)."""

    reference = "Ramesh et al. 2025, arXiv 2510.11018 (no public code)"

    Params = EasyCoreParams
    class_balanced_source = "off: the EasyCore abstract (arXiv 2510.11018) keeps the low-AIGN samples globally (its body is UNVERIFIED)"
    reference_budget = "UNVERIFIED: the EasyCore abstract (arXiv 2510.11018) does not say"
    signals = ("input_grad_norm_eval",)

    def required_signals(self) -> tuple[str, ...]:
        return ("input_grad_norm_eval",) if self.params.gradient_pass == "eval" else ("input_grad_norm",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        runs = ctx.signal_runs(self.required_signals()[0], self.params.n_runs)
        return mean_over_runs([r.mean(axis=0, dtype=np.float64) for r in runs])  # [E, N] -> AIGN [N]
