"""Random: keep a uniform sample without replacement (the baseline every board compares to).

`class_balanced` (stratified) keeps round(fraction × class size) per class, with exact
largest-remainder rounding so the total is still round(fraction × N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corebench.methods._common import class_budgets
from corebench.methods.base import CoresetMethod, SelectionContext
from corebench.methods.registry import register_method


@dataclass(frozen=True)
class RandomParams:
    class_balanced: bool = False


@register_method("random")
class RandomSubset(CoresetMethod):
    """Uniform sample without replacement, seeded by the cell's seed."""

    reference = "uniform sampling (baseline)"

    Params = RandomParams
    class_balanced_source = "off: a uniform draw over all samples (DeepCore `uniform.py`, `balance=False` by default)"
    reference_budget = "none of its own: the baseline trains as the method it is compared with"
    randomness = "the whole selection is a uniform draw"
    signals = ()

    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        rng = ctx.rng()
        budget = ctx.budget(fraction)
        if not self.params.class_balanced:
            return np.sort(rng.choice(ctx.n, size=budget, replace=False))
        picked = [
            rng.choice(np.flatnonzero(ctx.labels == cls), size=k, replace=False)
            for cls, k in class_budgets(ctx.labels, budget).items()
        ]
        return np.sort(np.concatenate(picked))
