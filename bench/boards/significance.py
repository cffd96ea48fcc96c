"""What a board may claim about a difference: the paired comparison of two rows, the family it
belongs to, and the declared primary comparisons.

Two rows of a board (a method and its comparator, same fraction) are compared over the seeds
both finished. When every one of those records keeps its per-image outcomes
(`record.per_image_outcomes`) on the same images, the difference counts the test images as a
sample too (`stats.paired_components`: seeds × images); otherwise it falls back to the seeds'
t-interval (`stats.paired_diff`) and says so (`PairedDiff.basis`).

A board's exploratory family is every difference to random it shows with an interval (at least
two seeds, neither row collapsed), at every fraction and ε, except the declared primary ones; its
p-values are adjusted across the family (`stats.adjust`: Holm unless the grid says `bh`), and a
difference is marked significant only when its adjusted p is below α = 0.05. The declared primary
comparisons (`grid.primary` in the records) form their own family, adjusted the same way across
the few declared, so the exploratory ones never dilute them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corebench.boards.stats import (
    CONFIDENCE,
    SEEDS_ONLY,
    PairedDiff,
    adjust,
    components,
    detectable_difference,
    paired_components,
    paired_diff,
)
from corebench.store.record import Record, unpack_bits

ALPHA = 1 - CONFIDENCE
# The prior `corebench plan` uses before a grid has records of a declared comparison, in
# (percentage points)²: a seed-to-seed sd of 4 pp of the paired difference (the committed CIFAR CPU
# boards show 1-10), and two models that disagree on 30 % of the images (10,000 · 0.3), half of it
# an image component shared by every seed and half residual. Stated on the plan's lines.
PRIOR_SEED_SD = 4.0
PRIOR_DISAGREEMENT = 0.3
PRIOR_TEXT = ("prior: seed sd of the difference 4 pp, the models disagreeing on 30% of the images, "
              "half of it shared by every seed")


def robust_outcomes(record: Record, autoattack: bool) -> dict[float, np.ndarray] | None:
    """ε -> per image, robust under the protocol's attack (AutoAttack or PGD-k); None when the
    record keeps no per-image outcomes (written before the field, or failed)."""
    po = record.per_image_outcomes if record.status == "ok" else None
    if po is None:
        return None
    out = {}
    for r in po.robust:
        bits = r.autoattack if autoattack else r.pgd
        if bits is None:
            return None
        out[float(r.eps)] = unpack_bits(bits, int(po.n))
    return out


def compare(a: Sequence[tuple[float | None, np.ndarray | None]],
            b: Sequence[tuple[float | None, np.ndarray | None]]) -> PairedDiff:  # fmt: skip
    """a − b over paired seeds, each side (accuracy, per-image outcomes or None) per seed:
    over seeds × images when every seed of both has outcomes of one length, else over seeds."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x[0] is not None and y[0] is not None]
    outcomes = [(x[1], y[1]) for x, y in pairs]
    if len(pairs) >= 2 and all(p is not None and q is not None for p, q in outcomes) \
            and len({p.size for pair in outcomes for p in pair}) == 1:  # fmt: skip
        return paired_components(np.stack([p for p, _ in outcomes]), np.stack([q for _, q in outcomes]))
    return paired_diff([x[0] for x, _ in pairs], [y[0] for _, y in pairs])


def power_of(a: Sequence[tuple[float | None, np.ndarray | None]],
             b: Sequence[tuple[float | None, np.ndarray | None]],
             seeds: int | None = None, images: int | None = None) -> float:  # fmt: skip
    """The smallest true difference (percentage points) found at 80 % power by a design of
    `seeds` × `images` (default: the pairs given), with the variance these pairs show."""
    d = compare(a, b)
    if d.n < 2 or d.low is None:
        return math.inf
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x[0] is not None and y[0] is not None]
    if d.basis == SEEDS_ONLY:
        diffs = np.array([x[0] - y[0] for x, y in pairs])
        s = seeds or d.n
        return detectable_difference(float(diffs.var(ddof=1)) / s, s - 1)
    c = components(100.0 * (np.stack([x[1] for x, _ in pairs]).astype(float) - np.stack([y[1] for _, y in pairs])))
    return detectable_difference(c.variance(seeds, images), c.df(seeds, images))


def prior_detectable(seeds: int, images: int) -> float:
    """`power_of` for a design of `seeds` × `images` under the stated prior (no records yet)."""
    per_image = 10_000 * PRIOR_DISAGREEMENT
    variance = PRIOR_SEED_SD**2 / seeds + per_image / 2 / images + per_image / 2 / (seeds * images)
    return detectable_difference(variance, seeds - 1)


@dataclass(frozen=True)
class Adjusted:
    """A family's adjusted p-values, keyed like the comparisons given."""

    method: str  # 'holm' or 'bh'
    p: dict[Any, float]

    @property
    def size(self) -> int:
        return len(self.p)

    def significant(self, key: Any) -> bool:
        p = self.p.get(key)
        return p is not None and p < ALPHA


def adjust_family(diffs: Mapping[Any, PairedDiff], method: str) -> Adjusted:
    """Adjust the p-values of the comparisons that have one (at least two seeds), in key order."""
    keys = sorted((k for k, d in diffs.items() if d.p is not None), key=repr)
    return Adjusted(method, dict(zip(keys, adjust([diffs[k].p for k in keys], method), strict=True)))
