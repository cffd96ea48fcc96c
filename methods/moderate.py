"""Moderate: keep the samples whose distance to their class centre is closest to the median.

Paper: Xia et al., "Moderate Coreset: A Universal Method of Data Selection for Real-world
Data-efficient Deep Learning", ICLR 2023. Reference implementation:
github.com/tmllab/2023_ICLR_Moderate-DS (linked from the paper as tmllab/Moderate-DS), `selection.py`: `get_median` takes each class
centre as the coordinate-wise `np.median` of the class's features, `get_distance` the
Euclidean distance of every sample to its own class centre, and `get_prune_idx` sorts ALL
distances together and drops both tails, keeping the middle `rate` of the ranking (the
returned indices are the pruned ones; issue #4 of that repository confirms it).
Reads `features` [N, D] (penultimate, eval mode, un-augmented, final scoring model).

Options where references disagree (default first, with its source):
- `center`: "median" (the reference code: `np.median(features_of_class, axis=0)`) or
  "mean" (the usual class prototype; the paper's text only says "class center").
- `class_balanced`: False keeps one global band over all distances (the reference); True
  keeps the middle band of each class with exact class budgets.

The band: distances ranked ascending (exact ties in a random order from the cell's seed); the k = round(fraction × N) kept sit
at ranks ⌊(N − k)/2⌋ … ⌊(N − k)/2⌋ + k − 1. The reference's bounds
round(N(0.5 ∓ rate/2)) can keep one sample fewer or more than asked; corebench keeps exactly k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from corebench.core.errors import MethodError
from corebench.methods._common import class_budgets, rank
from corebench.methods.base import CoresetMethod, SelectionContext, check_scores
from corebench.methods.registry import register_method


def class_distances(features: np.ndarray, labels: np.ndarray, center: str) -> np.ndarray:
    """Euclidean distance of each sample's feature to its class centre (median or mean)."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise MethodError(f"method 'moderate': features have shape {features.shape}, expected ({labels.shape[0]}, D)")
    dist = np.empty(labels.shape[0], dtype=np.float64)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        pts = features[members]
        centre = _median_rows(pts.T) if center == "median" else pts.mean(axis=0, dtype=np.float64)
        diff = pts - centre
        dist[members] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return dist


def _median_rows(x: np.ndarray) -> np.ndarray:
    """np.median(x, axis=1) in float64, via one partition of a contiguous copy (faster on CPU)."""
    x = np.ascontiguousarray(x)
    n = x.shape[1]
    half = n // 2
    if n % 2:
        return np.partition(x, half, axis=1)[:, half].astype(np.float64)
    part = np.partition(x, (half - 1, half), axis=1)
    return (part[:, half - 1].astype(np.float64) + part[:, half]) / 2


def middle_band(scores: np.ndarray, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions of the k scores in the middle of the ascending ranking (ties: `_common.rank`)."""
    order = rank(scores, "lowest", rng)
    start = (scores.shape[0] - k) // 2
    return order[start : start + k]


@dataclass(frozen=True)
class ModerateParams:
    center: Literal["median", "mean"] = "median"
    class_balanced: bool = False


@register_method("moderate")
class Moderate(CoresetMethod):
    """Keep the samples at moderate distance (around the median) from their class centre."""

    reference = "Xia et al. 2023, tmllab/2023_ICLR_Moderate-DS"

    Params = ModerateParams
    class_balanced_source = "off: tmllab/2023_ICLR_Moderate-DS `get_prune_idx` keeps one band over all distances"
    reference_budget = "epochs: tmllab/2023_ICLR_Moderate-DS `train.py --epoch 200`"
    signals = ("features",)

    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        (features,) = ctx.signal_runs("features")
        dist = check_scores(self.name, class_distances(features, ctx.labels, self.params.center), ctx.n, ctx)
        budget = ctx.budget(fraction)
        rng = ctx.rng()
        if not self.params.class_balanced:
            return np.sort(middle_band(dist, budget, rng))
        picked = []
        for cls, k in class_budgets(ctx.labels, budget).items():
            members = np.flatnonzero(ctx.labels == cls)
            picked.append(members[middle_band(dist[members], k, rng)])
        return np.sort(np.concatenate(picked))
