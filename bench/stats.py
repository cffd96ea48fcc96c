"""Paired comparisons over seeds: is a method's gain over random more than seed noise?

Cells of the same fraction and seed share the scoring run and the evaluation examples, so a
method and random are compared *paired over seeds*: the per-seed differences d_1..d_n get a
two-sided 95% Student-t interval, mean ± t(0.975, n-1) · sd / √n. A difference is called
significant when that interval excludes zero. With one pair there is no interval, and the
boards say so instead of claiming anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the paired differences with its 95% t-interval (None when n < 2)."""

    n: int
    mean: float
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        """The interval excludes zero (never with fewer than two pairs)."""
        if self.low is None or self.high is None:
            return False
        return self.low > 0 or self.high < 0


@lru_cache(maxsize=256)
def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value, e.g. 4.303 for df = 2 at 95%."""
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2, df))


def paired_diff(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedDiff:
    """Paired comparison of a - b (same seeds, same order). NaN pairs are dropped."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return PairedDiff(0, math.nan, None, None)
    mean = float(d.mean())
    if n < 2:
        return PairedDiff(n, mean, None, None)
    half = t_critical(n - 1, confidence) * float(d.std(ddof=1)) / math.sqrt(n)
    return PairedDiff(n, mean, mean - half, mean + half)
