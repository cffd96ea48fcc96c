"""CCS: drop the hardest β of the data, then sample the rest evenly over difficulty strata.

Paper: Zheng, Liu, Lai & Prakash, "Coverage-centric Coreset Selection for High Pruning
Rates", ICLR 2023. Reference implementation:
github.com/haizhongzheng/Coverage-centric-coreset-selection —
`core/data/Coreset.py` (`mislabel_mask`, `stratified_sampling` with its `bin_allocate`),
`train.py` (`--coreset-mode stratified`), `generate_importance_score.py` (the scores).

The algorithm (as the reference runs it): remove the floor(β·N) hardest samples; split the
remaining scores into `strata` equal-width bins between their min and max; visit the bins
from the smallest to the largest and give each min(size, ⌊budget left / bins left⌋); draw
that many uniformly at random inside each bin (here from `ctx.rng()`, so a seed fixes it).
Hardness: −AUM (low area under the margin = hard), forgetting count, or EL2N.

Options where references disagree (default first, with its source):
- `score`: "aum" (the reference README's CCS command: `--coreset-key accumulated_margin`),
  "forgetting" or "el2n" (both offered by the reference as coreset keys).
- `aum_on`: "probs" — the CCS reference accumulates p_y − max_{k≠y} p_k on softmax
  probabilities of the training pass (`generate_importance_score.py`,
  `training_dynamics_metrics`: `output = exp(log_softmax)`), summed over every logged step;
  "logits" is the AUM paper's margin (Pleiss et al. 2020, asappresearch/aum `aum/aum.py`,
  `AUMCalculator.update`). Averaging over epochs ranks like the reference's sum.
- `hard_cutoff` (β, a fraction of the FULL dataset): None takes it from the dataset's table in
  `BETA_TABLES` at the listed pruning rate nearest to 1 − fraction (a tie goes to the lower
  pruning rate, i.e. the smaller β); a number overrides it at every fraction; a mapping
  {fraction kept: β} gives one per fraction and must list every fraction of the grid. Sources, entry by entry: the
  reference README's CIFAR-10 command runs 90 % pruning with `--mis-ratio 0.3` (VERIFIED), and
  its ImageNet commands 90 % → 0.3 and 80 % → 0.2 (VERIFIED); the CIFAR-10 30/50/70/80 %
  entries are not in the README: they come from a reading of the paper's appendix that could
  not be checked against the paper (UNVERIFIED). A dataset without a table (CIFAR-100, SVHN,
  digits, npz, ...) has no default: the grid must set `hard_cutoff`, and a grid that does not
  is rejected when it is parsed. Every record stores the β used (`hard_cutoff`), where it came
  from (`hard_cutoff_source`: "set in the grid", "reference README (verified)", "paper appendix
  reading (unverified)" or "nearest table rate (unverified at this rate)") and the table's
  pruning rate it was read at (`hard_cutoff_rate`, None when set in the grid). β is capped so
  that at least `budget` samples remain, and the cut is floor(β·N) as the reference's
  `int(mis_ratio * total_num)`.
- `cutoff_by`: "aum" — the reference's `train.py` always ranks the β cut by
  `accumulated_margin` (`mis_key='accumulated_margin'`), whatever the stratification score;
  "score" cuts by the stratification score itself (the paper's Algorithm 1 reading).
- `strata`: 50 (the reference's `stratas = 50`).
- `el2n_epochs`: 10 — with `score: el2n` the reference sums training-pass EL2N over the first
  10 epochs (`EL2N(..., max_epoch=10)`); here the mean of the first min(10, E) rows of `el2n`.
- forgetting here counts never-learned samples as 0 events, as the CCS reference does
  (`last_correctness` starts at 0 and only 1→0 transitions count).
- `class_balanced`: False (the reference's stratified mode is global); True runs the cut and
  the stratified sampling inside each class with exact class budgets.
- `n_runs`: scores averaged over the first n scoring runs, each with its own seed (default 1;
  the paper grids keep 1: references.md records no averaging over runs for CCS).
- ties in the β cut are broken at random from the cell's seed (`_common.rank`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from corebench.core.errors import ConfigError, MethodError
from corebench.methods._common import class_budgets, forgetting_counts, mean_over_runs, rank
from corebench.methods.base import (
    CoresetMethod,
    PositiveCount,
    RunCount,
    SelectionContext,
    check_scores,
)
from corebench.methods.registry import register_method

log = logging.getLogger(__name__)

SOURCE_GRID = "set in the grid"
SOURCE_README = "reference README (verified)"
SOURCE_APPENDIX = "paper appendix reading (unverified)"
SOURCE_NEAREST = "nearest table rate (unverified at this rate)"

# Dataset registry name -> pruning rate (1 − fraction kept) -> (β, source of the entry).
BETA_TABLES: dict[str, dict[float, tuple[float, str]]] = {
    "cifar10": {
        0.3: (0.0, SOURCE_APPENDIX),
        0.5: (0.0, SOURCE_APPENDIX),
        0.7: (0.1, SOURCE_APPENDIX),
        0.8: (0.1, SOURCE_APPENDIX),
        0.9: (0.3, SOURCE_README),  # README: CIFAR-10, 90 % pruning, --mis-ratio 0.3
    },
    "imagenet": {  # no ImageNet loader ships; the README's values, for a plug-in dataset of that name
        0.8: (0.2, SOURCE_README),
        0.9: (0.3, SOURCE_README),
    },
}
BETA_CIFAR10: dict[float, float] = {rate: beta for rate, (beta, _) in BETA_TABLES["cifar10"].items()}


@dataclass(frozen=True)
class HardCutoff:
    """The β used at one fraction, where it came from, and the table rate it was read at."""

    beta: float
    source: str
    rate: float | None


def default_hard_cutoff(fraction: float, dataset: str = "cifar10") -> HardCutoff:
    """β from the dataset's table at the listed pruning rate nearest to 1 − fraction (ties:
    lower rate); a `ConfigError` naming `hard_cutoff` when the dataset has no table."""
    table = BETA_TABLES.get(dataset)
    if table is None:
        raise ConfigError(
            f"hard_cutoff: None is not allowed for dataset {dataset or '(unknown)'!r}; allowed: a number in [0, 1) "
            f"set in the grid (β tables exist only for {', '.join(BETA_TABLES)})"
        )
    rate = 1.0 - fraction
    nearest = min(table, key=lambda r: (round(abs(r - rate), 9), r))
    beta, source = table[nearest]
    exact = abs(nearest - rate) < 1e-9
    return HardCutoff(beta, source if exact else SOURCE_NEAREST, nearest)


def strata_of(scores: np.ndarray, n_strata: int) -> np.ndarray:
    """Equal-width bin (0 … n_strata−1) of each score between min and max (max in the last bin)."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        return np.zeros(scores.shape[0], dtype=np.int64)
    width = (hi - lo) / n_strata
    return np.clip(np.floor((scores - lo) / width).astype(np.int64), 0, n_strata - 1)


def allocate(sizes: np.ndarray, budget: int) -> np.ndarray:
    """The reference's `bin_allocate`: smallest stratum first, each min(size, left // strata left)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros_like(sizes)
    left = int(budget)
    order = np.argsort(sizes, kind="stable")  # ties: lower stratum first
    for i, s in enumerate(order):
        out[s] = min(int(sizes[s]), left // (len(sizes) - i))
        left -= int(out[s])
    if left:
        raise MethodError(f"method 'ccs': {budget} samples asked from strata holding only {int(sizes.sum())}")
    return out


def stratified_sample(scores: np.ndarray, budget: int, n_strata: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into `scores`) of a coverage-centric sample of `budget` over equal-width strata."""
    bins = strata_of(scores, n_strata)
    take = allocate(np.bincount(bins, minlength=n_strata), budget)
    picked = [
        rng.choice(np.flatnonzero(bins == b), size=int(take[b]), replace=False)
        for b in range(n_strata)
        if take[b]
    ]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


Beta = Annotated[float, Field(ge=0, lt=1)]


@dataclass(frozen=True)
class CCSParams:
    score: Literal["aum", "forgetting", "el2n"] = "aum"
    aum_on: Literal["probs", "logits"] = "probs"
    hard_cutoff: Beta | Mapping[float, Beta] | None = None  # None: the dataset's table
    cutoff_by: Literal["aum", "score"] = "aum"
    strata: PositiveCount = 50
    el2n_epochs: PositiveCount = 10
    class_balanced: bool = False
    n_runs: RunCount = 1


@register_method("ccs")
class CCS(CoresetMethod):
    """Coverage-centric selection: prune the hardest β, stratified sampling over the rest."""

    reference = "Zheng et al. 2023, haizhongzheng/Coverage-centric-coreset-selection"

    Params = CCSParams
    class_balanced_source = "off: the CCS reference (haizhongzheng/Coverage-centric-coreset-selection) stratifies all samples together"
    reference_budget = "steps: the CCS reference `train.py --iterations 40000` at every pruning rate"
    randomness = "draws uniformly at random inside each stratum, by design (the CCS reference)"
    signals = ("margin_probs",)

    def required_signals(self) -> tuple[str, ...]:
        margin = f"margin_{self.params.aum_on}"
        if self.params.score == "aum":
            return (margin,)
        own = "correct" if self.params.score == "forgetting" else "el2n"
        return (own, margin) if self.params.cutoff_by == "aum" else (own,)

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        """EL2N cut by itself reads the first `el2n_epochs` epochs; AUM and forgetting read all."""
        if self.params.score == "el2n" and self.params.cutoff_by == "score":
            return min(self.params.el2n_epochs, epochs)
        return epochs

    def hard_cutoff(self, fraction: float, dataset: str = "") -> HardCutoff:
        """β for this fraction on `dataset`: the configured number, or the dataset's table."""
        given = self.params.hard_cutoff
        if isinstance(given, Mapping):
            for kept, beta in given.items():
                if abs(float(kept) - fraction) < 1e-9:
                    return HardCutoff(float(beta), SOURCE_GRID, None)
            raise ConfigError(f"hard_cutoff: {dict(given)!r} is not allowed; allowed: a β for every fraction "
                              f"(no entry for {fraction:g})")
        if given is not None:
            return HardCutoff(float(given), SOURCE_GRID, None)
        return default_hard_cutoff(fraction, dataset)

    def options_for(self, fraction: float, dataset: str = "") -> dict[str, object]:
        """Records the β actually used at this fraction, its source and table rate."""
        cut = self.hard_cutoff(fraction, dataset)
        return {**self.options(), "hard_cutoff": cut.beta, "hard_cutoff_source": cut.source,
                "hard_cutoff_rate": cut.rate}

    def hardness(self, ctx: SelectionContext, score: str | None = None) -> np.ndarray:
        """Per-sample hardness (higher = harder) by `score` (default: the configured one)."""
        score = score or self.params.score
        n_runs = self.params.n_runs
        if score == "aum":
            runs = ctx.signal_runs(f"margin_{self.params.aum_on}", n_runs)
            return -mean_over_runs([r.mean(axis=0, dtype=np.float64) for r in runs])
        if score == "forgetting":
            return mean_over_runs([forgetting_counts(r)[0] for r in ctx.signal_runs("correct", n_runs)])
        runs = ctx.signal_runs("el2n", n_runs)
        return mean_over_runs([r[: self.params.el2n_epochs].mean(axis=0, dtype=np.float64) for r in runs])

    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        hard = check_scores(self.name, self.hardness(ctx), ctx.n, ctx)
        if self.params.cutoff_by == "aum" and self.params.score != "aum":
            cut_by = check_scores(self.name, self.hardness(ctx, "aum"), ctx.n, ctx)
        else:
            cut_by = hard
        beta = self.hard_cutoff(fraction, ctx.dataset).beta
        log.debug("ccs: fraction %s, hard cutoff beta %s", fraction, beta)
        rng = ctx.rng()
        budget = ctx.budget(fraction)
        if not self.params.class_balanced:
            return np.sort(self._select_in(np.arange(ctx.n), hard, cut_by, budget, beta, rng))
        picked = [
            self._select_in(np.flatnonzero(ctx.labels == cls), hard, cut_by, k, beta, rng)
            for cls, k in class_budgets(ctx.labels, budget).items()
        ]
        return np.sort(np.concatenate(picked))

    def _select_in(
        self, members: np.ndarray, hard: np.ndarray, cut_by: np.ndarray, k: int, beta: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Cut the hardest β of `members` (capped to leave k), stratified-sample k of the rest."""
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        n_cut = min(math.floor(beta * members.size + 1e-9), members.size - k)
        kept = np.sort(rank(cut_by[members], "highest", rng)[n_cut:])
        pool = members[kept]
        return pool[stratified_sample(hard[pool], k, self.params.strata, rng)]
