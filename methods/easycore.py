"""EasyCore: keep the samples with the lowest average input-gradient norm (AIGN).

Paper: "The Easy Path to Robustness: Coreset Selection using Sample Hardness". The hardness
of sample i is AIGN_i = (1/E) Σ_e ‖∇ₓ CE(f_e(x_i), y_i)‖₂ over the E epochs of a training
run on the full data; EasyCore keeps the lowest-AIGN ("easy") samples. No public code exists;
corebench is the reference implementation.

Options where a reading of the paper leaves room:
- `gradient_pass`: "train" takes the input gradient in the training pass itself (train-mode
  BatchNorm, augmented inputs, almost free); "eval" takes it in a separate eval-mode pass on
  un-augmented inputs each epoch (its cost is in benchmarks/README.md). Default
  "train", the cheap one; "eval" is measured and offered.
- `direction`: "easiest" (the paper) or "hardest", so boards can test whether easiness is
  what matters.
- `class_balanced`: the paper keeps globally; per-class keeps are an option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.methods.base import Direction, ScoreBasedMethod, SelectionContext
from corebench.methods.registry import register_method


@dataclass(frozen=True)
class EasyCoreParams:
    gradient_pass: Literal["train", "eval"] = "train"
    direction: Direction = "easiest"
    class_balanced: bool = False


@register_method("easycore")
class EasyCore(ScoreBasedMethod):
    """Keep the samples with the lowest average input-gradient norm (AIGN)."""

    Params = EasyCoreParams
    signals = ("input_grad_norm",)

    def required_signals(self) -> tuple[str, ...]:
        return ("input_grad_norm_eval",) if self.params.gradient_pass == "eval" else ("input_grad_norm",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        (grad_norms,) = ctx.signal_runs(self.required_signals()[0])
        return grad_norms.mean(axis=0)  # [E, N] -> AIGN [N]
