"""How stable a cell's selection is, measured on equal footing for every method (issue 18).

The board's seed-to-seed Jaccard compares what each method actually kept, and a method that
averages its score over 3 scoring runs (or EasyCore over 3 runs × 10 epochs) is compared with
one that reads a single run: the averaging, not the score, makes it look stable. This module
measures, for one cell, what makes the comparison fair and what each method's own randomness
adds (`selection_stability`, written into the record's `stability` block):

- the selection made from the cell's first scoring run alone (the method with `n_runs: 1`);
  the board compares these across seeds, so every method is judged on one run per seed;
- with at least two scoring runs, the Spearman correlation of the single-run scores of runs 0
  and 1 (score-based methods), and the Jaccard overlap of their single-run selections;
- the overlap of the selection with the one the same signals give under another seed: 1 when
  the signals fix the choice; below 1 for ties broken at random (forgetting's integer counts)
  or random draws by design (CCS samples inside its strata, k-center draws its first centre);
- how many samples tie with the score at the selection boundary (score-based methods).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from corebench.boards.stats import jaccard
from corebench.methods import CoresetMethod, SelectionContext, run_selection
from corebench.methods._common import class_budgets
from corebench.methods.base import ScoreBasedMethod, check_scores, declared_signals


def single_run(method: CoresetMethod) -> CoresetMethod:
    """The same method reading one scoring run (`n_runs: 1`); itself when it reads one."""
    if method.scoring_runs() <= 1 or not hasattr(method.params, "n_runs"):
        return method
    return type(method)(dataclasses.replace(method.params, n_runs=1))


def selection_stability(method: CoresetMethod, ctx: SelectionContext, fraction: float,
                        indices: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The record's `stability` block for a cell whose method kept `indices`, and the indices
    the method keeps from the cell's first scoring run alone (the same array when it reads one).

    `ctx` is the full context the harness built (every scoring run the method reads)."""
    one = single_run(method)
    first = dataclasses.replace(ctx, runs=ctx.runs[:1])
    single = indices if one is method else run_selection(one, first, fraction)
    block: dict[str, Any] = {
        "runs_averaged": method.scoring_runs(),
        "single_run_spearman": None,
        "single_run_jaccard": None,
        "own_randomness_jaccard": None,
        "boundary_ties": None,
    }
    if len(ctx.runs) >= 2 and one is not method:
        second = dataclasses.replace(ctx, runs=ctx.runs[1:2])
        block["single_run_jaccard"] = round(jaccard(single, run_selection(one, second, fraction)), 4)
        if isinstance(one, ScoreBasedMethod):
            a, b = (_scores(one, c) for c in (first, second))
            block["single_run_spearman"] = round(float(spearmanr(a, b).statistic), 4)
    if method.selection_cost != "greedy":  # a greedy traversal is too slow to repeat at N = 50,000
        again = run_selection(method, dataclasses.replace(ctx, seed=ctx.seed + 1), fraction)
        block["own_randomness_jaccard"] = round(jaccard(indices, again), 4)
    if isinstance(method, ScoreBasedMethod):
        block["boundary_ties"] = boundary_ties(method, ctx, fraction)
    return block, single


def _scores(method: ScoreBasedMethod, ctx: SelectionContext) -> np.ndarray:
    view = ctx.only(method.name, declared_signals(method))
    return check_scores(method.name, method.hardness(view), ctx.n)


def boundary_ties(method: ScoreBasedMethod, ctx: SelectionContext, fraction: float) -> int:
    """Samples whose score equals the last kept score (per class under `class_balanced`), the
    boundary one included: 1 when nothing ties there; more means the seed's tie-break decides."""
    scores = _scores(method, ctx)
    if method.params.direction == "hardest":
        scores = -scores
    groups = {None: ctx.budget(fraction)}
    if getattr(method.params, "class_balanced", False):
        groups = class_budgets(ctx.labels, ctx.budget(fraction))
    ties = 0
    for cls, k in groups.items():
        members = scores if cls is None else scores[ctx.labels == cls]
        if k == 0 or k >= members.size:
            continue
        edge = np.partition(members, k - 1)[k - 1]
        ties += int(np.sum(members == edge))
    return ties
