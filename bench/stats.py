"""Paired comparisons over seeds: is a method's gain over random more than seed noise?

Cells of the same fraction and seed share the scoring run and the evaluation examples, so a
method and random are compared *paired over seeds*: the per-seed differences d_1..d_n get a
two-sided 95% Student-t interval, mean ± t(0.975, n-1) · sd / √n. A difference is called
significant when that interval excludes zero. With one pair there is no interval, and the
boards say so instead of claiming anything.

Every accuracy on a board carries a 95% interval too (`seeds_interval`): over seeds when there
are several, over the evaluated test images (exact binomial) when there is one; and the
overlap of two coresets is their Jaccard index (`jaccard`).
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


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval; `low`/`high` None when there is none (no data, or one
    seed without the number of evaluated examples)."""

    n: int
    mean: float
    low: float | None
    high: float | None
    std: float  # sample std over seeds (NaN for fewer than two)

    def above(self, other: Interval) -> bool:
        """This interval lies entirely above the other one (both defined)."""
        return None not in (self.low, other.high) and self.low > other.high


def seeds_interval(values: list[float], n_eval: int | None = None,
                   confidence: float = CONFIDENCE) -> Interval:  # fmt: skip
    """The interval of an accuracy (percent) over seeds, within [0, 100].

    Several seeds: the seeds' Student-t interval, mean ± t(0.975, n−1)·sd/√n, clipped to the
    possible range. One seed: the exact (Clopper–Pearson) binomial interval of its
    k = acc·n_eval/100 correct test images, the uncertainty of evaluating on a finite test sample.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return Interval(0, math.nan, None, None, math.nan)
    mean = math.fsum(vals) / n
    if n == 1:
        if not n_eval:
            return Interval(1, mean, None, None, math.nan)
        low, high = binomial_interval(round(mean * n_eval / 100), n_eval, confidence)
        return Interval(1, mean, 100 * low, 100 * high, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return Interval(n, mean, max(0.0, mean - half), min(100.0, mean + half), std)


@lru_cache(maxsize=4096)
def binomial_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper–Pearson interval of a proportion k/n (exact; 0 and 1 at the ends)."""
    alpha = 1 - confidence
    low = 0.0 if k <= 0 else float(_scipy_stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(_scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted arrays of unique indices (1.0 for two empty sets).

    Binary search of b in a, no sort: the store keeps kept indices sorted and unique.
    """
    if a.size == 0 or b.size == 0:
        return 1.0 if a.size == b.size else 0.0
    pos = np.minimum(np.searchsorted(a, b), a.size - 1)
    inter = int(np.count_nonzero(a[pos] == b))
    return inter / (a.size + b.size - inter)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two per-sample scores (tied scores share their mean rank,
    as integer counts such as Dong et al.'s tie often)."""
    return float(_scipy_stats.spearmanr(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).statistic)


def kept_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """The share of one coreset's samples the other keeps too, |A ∩ B| / |A| (equal sizes)."""
    a, b = np.unique(a), np.unique(b)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"kept_overlap compares two coresets of one size, got {a.size} and {b.size}")
    return float(np.intersect1d(a, b).size / a.size)
