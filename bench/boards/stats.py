"""Paired comparisons over seeds: is a method's gain over random more than seed noise?

Cells of the same fraction and seed share the scoring run and the evaluation examples, so a
method and random are compared *paired over seeds*: the per-seed differences d_1..d_n get a
two-sided 95% Student-t interval, mean ± t(0.975, n-1) · sd / √n. A difference is called
significant when that interval excludes zero. With one pair there is no interval, and the
boards say so instead of claiming anything.

Every accuracy on a board carries a 95% interval too (`seeds_interval`): over seeds when there
are several, over the evaluated test images (exact binomial) when there is one; and the
overlap of two coresets is their Jaccard index (`jaccard`).

Differences that count the test images too (`paired_components`): every seed of both models is
evaluated on the same images, so a difference d[s, i] = a[s, i] − b[s, i] (seed s, image i, each
0 or 1) is a crossed seeds × images design. Its mean's variance is estimated from the two-way
ANOVA mean squares (method of moments, components truncated at zero):
Var(d̄) = (MS_res + max(MS_seed − MS_res, 0) + max(MS_img − MS_res, 0)) / (S·N) (Searle,
Casella & McCulloch, *Variance Components*, 1992, ch. 4), with the seeds' S − 1 degrees of
freedom when a seed component is present and Satterthwaite's (1946) otherwise (`Components.df`).
A test on simulated boards checks the interval's coverage (tests/test_stats_intervals.py).

Across a board's family of comparisons the p-values are adjusted (`adjust`: Holm by default,
Benjamini–Hochberg as an option) by statsmodels' `multipletests`, imported only when called.
`detectable_difference` is the smallest true difference a design finds at 80 % power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special as _special
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95


SEEDS_ONLY = "seeds"  # the interval counts seed-to-seed noise only (no per-image outcomes)
SEEDS_AND_IMAGES = "seeds+images"  # variance components over seeds × images
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh"}  # grid spelling -> statsmodels' method name
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg"}
POWER = 0.8


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the paired differences with its 95% interval (None when n < 2 seeds), its
    two-sided p-value, degrees of freedom and what the interval counts (`SEEDS_ONLY` or
    `SEEDS_AND_IMAGES`)."""

    n: int
    mean: float
    low: float | None
    high: float | None
    p: float | None = None
    df: float | None = None
    basis: str = SEEDS_ONLY

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
    se = float(d.std(ddof=1)) / math.sqrt(n)
    return _t_interval(n, mean, se, n - 1, confidence, SEEDS_ONLY)


def _t_interval(n: int, mean: float, se: float, df: float, confidence: float, basis: str) -> PairedDiff:
    """mean ± t(df)·se with the two-sided p-value of mean = 0 (p = 1 when se = 0 and mean = 0)."""
    # scipy.special's Student-t functions directly: the distribution objects cost ~100x more per call
    half = float(_special.stdtrit(df, 0.5 + confidence / 2)) * se
    if se > 0:
        p = float(2 * _special.stdtr(df, -abs(mean) / se))
    else:
        p = 1.0 if mean == 0 else 0.0
    return PairedDiff(n, mean, mean - half, mean + half, p, df, basis)


@dataclass(frozen=True)
class Components:
    """Two-way (seeds × images) ANOVA mean squares of per-image differences, in (percentage points)²."""

    seeds: int
    images: int
    ms_seed: float
    ms_image: float
    ms_res: float

    def variance(self, seeds: int | None = None, images: int | None = None) -> float:
        """Var(d̄) for a design of `seeds` × `images` (default: this one's), from the components."""
        s, n = seeds or self.seeds, images or self.images
        res = self.ms_res
        seed_c = max(self.ms_seed - res, 0.0) / self.images  # σ²_seed
        image_c = max(self.ms_image - res, 0.0) / self.seeds  # σ²_image
        return seed_c / s + image_c / n + res / (s * n)

    def df(self, seeds: int | None = None, images: int | None = None) -> float:
        """Degrees of freedom of `variance(seeds, images)`: the seeds' S − 1 when a seed
        component is present (the containment df, SAS PROC MIXED's DDFM=CONTAIN: the mean is
        estimated in the seed stratum), Satterthwaite's otherwise. Satterthwaite's alone
        undercovers with 3 seeds (0.87–0.93 for a nominal 0.95 in the simulation of
        tests/test_stats_intervals.py); the seeds' df keep it at 0.94–0.97 there."""
        s, n = seeds or self.seeds, images or self.images
        res = self.ms_res
        if self.ms_seed > res:
            return float(s - 1)
        parts = [(max(self.ms_image - res, 0.0) / self.seeds / n, self.images - 1),
                 (res / (s * n), (self.seeds - 1) * (self.images - 1))]  # fmt: skip
        total = sum(v for v, _ in parts)
        denom = sum(v * v / df for v, df in parts if df > 0)
        return total * total / denom if denom > 0 else math.inf


def components(d: np.ndarray) -> Components:
    """The mean squares of a seeds × images array of differences (percentage points)."""
    d = np.asarray(d, dtype=float)
    s, n = d.shape
    grand = d.mean()
    by_seed, by_image = d.mean(axis=1), d.mean(axis=0)
    resid = d - by_seed[:, None] - by_image[None, :] + grand
    ms_seed = n * float(((by_seed - grand) ** 2).sum()) / (s - 1)
    ms_image = s * float(((by_image - grand) ** 2).sum()) / (n - 1)
    ms_res = float((resid**2).sum()) / ((s - 1) * (n - 1))
    return Components(s, n, ms_seed, ms_image, ms_res)


def paired_components(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedDiff:
    """a − b in percentage points from per-image outcomes (seeds × images, 0/1, same seeds and
    images in the same order): the variance-components interval (see the module docstring)."""
    d = 100.0 * (np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    s, n = d.shape
    mean = float(d.mean())
    if s < 2 or n < 2:
        return PairedDiff(s, mean, None, None, None, None, SEEDS_AND_IMAGES)
    c = components(d)
    return _t_interval(s, mean, math.sqrt(c.variance()), c.df(), confidence, SEEDS_AND_IMAGES)


def adjust(pvalues: list[float], method: str = "holm", alpha: float = 1 - CONFIDENCE) -> list[float]:
    """p-values adjusted across one family (`method`: 'holm' or 'bh'), by statsmodels'
    `multipletests` (imported here: it takes about a second to import)."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    # statsmodels' Holm branch ends with a full gc.collect() (statsmodels 0.15, multitest.py),
    # 0.1-0.3 s with many objects alive; generate_leaderboards freezes its records and boards first
    adjusted = multipletests(pvalues, alpha=alpha, method=CORRECTIONS[method])[1]
    return [float(p) for p in adjusted]


def detectable_difference(variance: float, df: float, alpha: float = 1 - CONFIDENCE, power: float = POWER) -> float:
    """The smallest true difference a two-sided t-test at level α finds with probability
    `power`: (t(1 − α/2, df) + t(power, df)) · √Var(d̄) (the usual normal-approximation formula
    with t quantiles; infinite when df < 1)."""
    if not df >= 1 or not math.isfinite(variance):
        return math.inf
    t = _scipy_stats.t
    return float((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * math.sqrt(variance))


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
