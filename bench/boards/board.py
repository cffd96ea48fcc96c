"""One board's numbers: records grouped into boards, then aggregated over seeds.

A board is one grid × dataset × arch × regime × evaluation protocol. For every method
(row label) × fraction it holds, at every evaluation ε:

- the robust and clean accuracy with a 95% interval: over seeds (t-interval) for several
  seeds, over the evaluated test images (exact binomial) for one (`corebench.boards.stats`);
- the difference to random, paired over seeds and, where the records keep per-image outcomes,
  over the test images too; significance adjusted across the board's family, and the grid's
  declared primary comparisons apart (`corebench.boards.significance`);
- whether a seed's model is degenerate (`degenerate`): more than half of its clean predictions
  in one class (the record's `metrics.predicted_histogram`), or clean accuracy at most 1.5×
  chance (1.5/K). Judged per seed, not on the mean over seeds: one collapsed seed in three
  hides under a mean. A degenerate model predicts nearly one class, so its robust accuracy
  says nothing about robustness. A method × fraction with any degenerate seed is marked
  collapsed: never best, never ranked, no significance claimed (its numbers stay visible,
  with how many seeds were flagged; dropping the flagged seeds instead would rank the
  survivors of an unstable method);
- the best method per fraction, only when its interval lies above the runner-up's;
- selection stability: the mean Jaccard overlap of the coresets chosen with different
  scoring seeds (cells of different seeds), and across scoring architectures;
- classes covered: per seed, how many classes hold at least `MIN_CLASS_SAMPLES` samples of
  the coreset and the largest class's share, from the record's class histogram (a global
  ranking can drop whole classes; a model cannot learn a class it never sees);
- cost: the scoring runs a method's selection needs (once per seed, however many fractions
  or methods share them), charged by need (`methods.base.scoring_need`, asked through `facts`: the epochs and
  measurement passes its signals need, not the whole run it shares with longer needs), and
  the training steps and seconds, relative to full-data training.

Determinism: everything is a function of the records' contents, iterated in sorted order.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol as Interface

import numpy as np

from corebench.boards.coresets import (
    Cost,
    FairStability,
    class_coverage,
    costs,
    fair_stability,
    overlaps,
)
from corebench.boards.significance import (
    Adjusted,
    adjust_family,
    compare,
    power_of,
    robust_outcomes,
)
from corebench.boards.stats import Interval, PairedDiff, seeds_interval
from corebench.core.protocol import Protocol
from corebench.core.spec import FULL_DATA, slug, stable_hash
from corebench.store.record import Record, Stability
from corebench.store.results import Stored, robust_by_eps

log = logging.getLogger(__name__)

RANDOM = "random"
COLLAPSE_FACTOR = 1.5  # clean accuracy at most 1.5 × chance (100/K %) marks a collapsed model
ONE_CLASS_SHARE = 0.5  # more than half the clean predictions in one class marks one too

# What a board reads of a method, beyond its records.
FACTS = ("reference_budget", "randomness")


class ScoringNeedLike(Interface):
    """The epochs and measurement passes a method's signals need (`methods.base.ScoringNeed`)."""

    epochs: int
    passes: int


class MethodFacts(Interface):
    """What a board asks about a recorded method. The boards import no method: the caller hands
    these in (`corebench.methods.facts` answers from the installed registry)."""

    def need(self, method: str, options: str, scoring: str) -> ScoringNeedLike | None:
        """The method's scoring need under its recorded options and scoring settings (JSON)."""

    def fact(self, method: str, name: str) -> str:
        """A class fact of the method (one of `FACTS`); "" when it is not installed here."""


@dataclass(frozen=True)
class Entry:
    """What a board needs from one record (read once, in `build_boards`)."""

    label: str
    method: str
    base_label: str  # the label without '@scorer'
    scoring_arch: str
    fraction: float
    seed: int
    ok: bool
    error: str | None
    clean: float | None
    n_eval: int | None
    robust: dict[float, float | None]  # ε -> the protocol's robust accuracy
    num_classes: int | None
    class_histogram: tuple[int, ...] | None  # the coreset's samples per class
    predicted_histogram: tuple[int, ...] | None  # clean predictions per class (None: not recorded)
    indices: str | None  # the kept-indices file (a string: boards handle thousands)
    stability: Stability | None  # the record's `stability` block (None: not recorded)
    single_run: str | None  # the selection from one scoring run (`stability.single_run_indices_file`)
    # (key, epochs trained, seconds, epochs needed, passes needed or None); None: not recorded
    scoring_runs: tuple[tuple[str, float, float, float, int | None], ...] | None
    scoring_s: float | None  # the cell's scoring seconds (what schema-1 records have instead)
    train_steps: int | None
    train_s: float | None
    path: Path
    outcomes: dict[float, np.ndarray] | None = None  # ε -> robust per evaluated image (None: not kept)


@dataclass(frozen=True)
class CellStats:
    """One method × fraction over its seeds."""

    n: int
    n_failed: int
    clean: Interval
    robust: dict[float, Interval]
    diff: dict[float, PairedDiff | None]  # against random, paired over seeds; None for random
    collapsed: bool  # some seed is degenerate (`degenerate`)
    n_degenerate: int = 0  # seeds flagged by `degenerate`


@dataclass(frozen=True)
class PrimaryResult:
    """One declared primary comparison on this board: method − against at a fraction and ε."""

    method: str
    against: str
    fraction: float
    eps: float
    diff: PairedDiff | None  # None: a row is missing from this board
    p_adjusted: float | None  # across the board's declared comparisons
    detectable: float  # smallest difference found at 80 % power with this board's seeds and images


@dataclass
class Board:
    """One page: a grid × dataset × arch × regime × protocol, aggregated."""

    grid: str
    dataset: str
    arch: str
    regime: str
    protocol: Protocol
    name: str = ""
    tag: str = ""  # protocol tag when the group has several protocols
    records: list[Record] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # filled by aggregate()
    methods: list[str] = field(default_factory=list)  # in ranking order
    fractions: list[float] = field(default_factory=list)
    random_label: str | None = None
    num_classes: int | None = None
    cells: dict[tuple[str, float], CellStats] = field(default_factory=dict)
    full: CellStats | None = None
    rank: dict[float, dict[tuple[str, float], float]] = field(default_factory=dict)
    mean_rank: dict[float, dict[str, float | None]] = field(default_factory=dict)
    gain: dict[float, dict[str, float | None]] = field(default_factory=dict)
    best: dict[float, dict[float, str | None]] = field(default_factory=dict)  # ε -> fraction -> label
    best_clean: dict[float, str | None] = field(default_factory=dict)
    stability: dict[tuple[str, float], tuple[float, int]] = field(default_factory=dict)  # (label, f)
    scorer_stability: dict[tuple[str, float], tuple[float, int]] = field(default_factory=dict)  # (base, f)
    agreement: dict[tuple[str, float], tuple[float, int]] = field(default_factory=dict)  # (label, f): with AGREEMENT_WITH
    cost: dict[str, Cost] = field(default_factory=dict)
    degenerate_seeds: list[tuple[str, float, int, str]] = field(default_factory=list)  # label, f, seed, why
    coverage: dict[tuple[str, float], list[tuple[int, float]]] = field(default_factory=dict)  # per seed
    fair_stability: dict[tuple[str, float], FairStability] = field(default_factory=dict)
    correction: str = "holm"  # the grid's, across the family
    family: Adjusted | None = None  # the exploratory differences to random, keyed (label, fraction, ε)
    primary: list[PrimaryResult] = field(default_factory=list)
    method_facts: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, fact name)

    @property
    def metric_name(self) -> str:
        return self.protocol.metric_name

    @property
    def n_ok(self) -> int:
        return sum(e.ok for e in self.entries)

    @property
    def n_failed(self) -> int:
        return sum(not e.ok for e in self.entries)

    @property
    def seeds(self) -> list[int]:
        return sorted({e.seed for e in self.entries})


# --------------------------------------------------------------------------- grouping


def entry_of(stored: Stored, facts: MethodFacts) -> Entry:
    """The parts of a stored (validated) record a board uses; `facts` rebuilds an older record's
    scoring need."""
    path, record, protocol = stored
    cell, metrics, coreset = record.cell, record.metrics, record.coreset
    ok = record.status == "ok"
    which = 1 if protocol.autoattack_enabled else 0
    robust = {eps: pair[which] for eps, pair in robust_by_eps(record, protocol).items()}
    cost, training = record.cost, record.training
    runs = None
    if cost is not None:
        recorded = cost.scoring_runs
        need = None if all("epochs_needed" in r.model_fields_set for r in recorded) else need_of(record, facts)
        runs = tuple(
            (r.key, float(r.epochs or 0), float(r.seconds or 0),
             float(r.epochs_needed if r.epochs_needed is not None else need.epochs if need else r.epochs or 0),
             r.passes_needed if r.passes_needed is not None else need.passes if need else None)
            for r in recorded
        )  # fmt: skip
    scorer = cell.scoring_arch
    label = cell.method_label
    hist = coreset.class_histogram if coreset is not None else None
    stability = record.stability if ok else None
    folder = os.path.dirname(path)
    return Entry(
        label=label,
        method=cell.method,
        base_label=label.removesuffix(f"@{scorer}"),
        scoring_arch=scorer,
        fraction=float(cell.fraction),
        seed=int(cell.seed),
        ok=ok,
        error=record.error,
        clean=metrics.clean_acc if ok and metrics else None,
        n_eval=metrics.n_eval if ok and metrics else None,
        robust=robust,
        num_classes=len(hist) if hist else None,
        class_histogram=tuple(hist) if hist else None,
        predicted_histogram=tuple(h) if ok and metrics and (h := metrics.predicted_histogram) else None,
        indices=os.path.join(folder, coreset.indices_file) if coreset is not None and coreset.indices_file else None,
        stability=stability,
        single_run=os.path.join(folder, stability.single_run_indices_file) if stability is not None else None,
        scoring_runs=runs,
        scoring_s=record.timings.get("scoring_s"),
        train_steps=cost.train_steps if cost is not None else training.steps if training is not None else None,
        train_s=cost.train_s if cost is not None else record.timings.get("train_s"),
        path=path,
        outcomes=robust_outcomes(record, protocol.autoattack_enabled) if ok else None,
    )


def need_of(record: Record, facts: MethodFacts) -> ScoringNeedLike | None:
    """The scoring need of a record's method from its options and scoring settings, for records
    older than `cost.scoring_runs[].epochs_needed`; None when the method cannot be rebuilt here
    (a plug-in not installed, options it no longer takes)."""
    return facts.need(record.cell.method, json.dumps(record.method_options, sort_keys=True),
                      json.dumps(record.config_written.get("scoring", {}), sort_keys=True))


def build_boards(
    records: list[Stored], problems: list[tuple[Path, str]], results_dir: Path, facts: MethodFacts
) -> tuple[list[Board], list[tuple[Path, str]]]:
    """Group valid records (from `results.scan`, which refuses two records of one cell) into
    boards, one per protocol; `facts` answers what a board asks about the methods (`MethodFacts`)."""
    groups: dict[tuple[str, str, str, str], dict[str, Board]] = defaultdict(dict)
    problems = list(problems)
    for stored in records:
        rec, protocol = stored.record, stored.protocol
        cell = rec.cell
        key = (rec.grid.name, cell.dataset, cell.arch, cell.regime)
        board = groups[key].get(protocol.key)
        if board is None:
            board = groups[key][protocol.key] = Board(*key, protocol=protocol)
        board.records.append(rec)
        board.entries.append(entry_of(stored, facts))
        for name in FACTS:
            board.method_facts.setdefault((cell.method, name), facts.fact(cell.method, name))
    boards: list[Board] = []
    for key in sorted(groups):
        by_proto = groups[key]
        stem = "__".join(slug(part) for part in key[1:])
        tags = {p: b.protocol.tag() for p, b in by_proto.items()}
        if len(set(tags.values())) < len(tags):  # two protocols print alike: make them unique
            tags = {p: f"{t}-{stable_hash(p, 6)}" for p, t in tags.items()}
        for pkey in sorted(by_proto, key=lambda p: (tags[p], p)):
            board = by_proto[pkey]
            board.tag = tags[pkey] if len(by_proto) > 1 else ""
            board.name = stem + (f"__{board.tag}" if board.tag else "")
            boards.append(board)
    _attribute_skipped(boards, problems, results_dir)
    return boards, sorted(problems, key=lambda p: str(p[0]))


def _attribute_skipped(boards: list[Board], problems: list[tuple[Path, str]], results_dir: Path) -> None:
    """A skipped file belongs to the boards whose records share its regime folder."""
    if not problems:
        return
    folders: dict[Path, list[Board]] = defaultdict(list)
    for board in boards:
        regime_dirs = {os.path.dirname(os.path.dirname(os.path.dirname(e.path))) for e in board.entries}
        for d in sorted(regime_dirs):
            folders[Path(d)].append(board)
    for path, reason in sorted(problems, key=lambda p: str(p[0])):
        for parent in Path(path).parents:
            if parent in folders:
                for board in folders[parent]:
                    board.skipped.append((rel_text(path, results_dir), reason))
                break


def rel_text(path: Path, root: Path) -> str:
    """`path` relative to `root`, '/'-separated (as boards show paths); as given when outside it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


# --------------------------------------------------------------------------- aggregation


def aggregate(board: Board) -> None:
    """Fill the board's statistics from its entries (see the module docstring for the rules)."""
    ok: dict[tuple[str, float], dict[int, Entry]] = defaultdict(dict)
    failed: Counter[tuple[str, float]] = Counter()
    random_labels: set[str] = set()
    for e in board.entries:
        key = (FULL_DATA, 1.0) if e.method == FULL_DATA else (e.label, e.fraction)
        if e.method == RANDOM:
            random_labels.add(e.label)
        if e.ok:
            ok[key][e.seed] = e
        else:
            failed[key] += 1
    labels = sorted({e.label for e in board.entries if e.method != FULL_DATA})
    board.fractions = sorted({e.fraction for e in board.entries if e.method != FULL_DATA})
    if random_labels:
        board.random_label = RANDOM if RANDOM in random_labels else sorted(random_labels)[0]
    classes = {e.num_classes for e in board.entries if e.num_classes}
    board.num_classes = max(classes) if classes else None
    eps_list = board.protocol.eps

    def stats(key: tuple[str, float]) -> CellStats:
        by_seed = ok.get(key, {})
        rows = [by_seed[s] for s in sorted(by_seed)]
        n_eval = rows[0].n_eval if len(rows) == 1 else None
        clean = seeds_interval([r.clean for r in rows], n_eval)
        robust = {eps: seeds_interval([r.robust.get(eps) for r in rows], n_eval) for eps in eps_list}
        diff: dict[float, PairedDiff | None] = {eps: None for eps in eps_list}
        if board.random_label is not None and key[0] not in (board.random_label, FULL_DATA):
            ref = ok.get((board.random_label, key[1]), {})
            common = [s for s in sorted(by_seed) if s in ref]
            for eps in eps_list:
                diff[eps] = compare(_sides(by_seed, common, eps), _sides(ref, common, eps))
        flagged = 0
        for r in rows:
            if (why := degenerate(r, board.num_classes)) is not None:
                board.degenerate_seeds.append((key[0], key[1], r.seed, why))
                flagged += 1
        return CellStats(len(rows), failed.get(key, 0), clean, robust, diff, flagged > 0, flagged)

    board.cells = {(lab, f): stats((lab, f)) for lab in labels for f in board.fractions}
    has_full = any(e.method == FULL_DATA for e in board.entries)
    board.full = stats((FULL_DATA, 1.0)) if has_full else None

    for eps in eps_list:
        board.rank[eps], board.best[eps] = {}, {}
        ranks: dict[str, list[float]] = defaultdict(list)
        for f in board.fractions:
            ranked = {lab: round(board.cells[(lab, f)].robust[eps].mean, 2) for lab in labels
                      if board.cells[(lab, f)].n and not board.cells[(lab, f)].collapsed}  # fmt: skip
            for lab, r in _average_ranks(ranked).items():
                board.rank[eps][(lab, f)] = r
                ranks[lab].append(r)
            board.best[eps][f] = _separated_best({lab: board.cells[(lab, f)].robust[eps] for lab in ranked})
        board.mean_rank[eps] = {lab: math.fsum(ranks[lab]) / len(ranks[lab]) if ranks[lab] else None for lab in labels}
        board.gain[eps] = {}
        for lab in labels:
            gains = [d.mean for f in board.fractions
                     if (d := board.cells[(lab, f)].diff[eps]) and d.n and not board.cells[(lab, f)].collapsed]  # fmt: skip
            board.gain[eps][lab] = math.fsum(gains) / len(gains) if gains else None
    for f in board.fractions:
        board.best_clean[f] = _separated_best({lab: board.cells[(lab, f)].clean for lab in labels
                                               if board.cells[(lab, f)].n and not board.cells[(lab, f)].collapsed})  # fmt: skip

    def order(lab: str) -> tuple:
        present = [r for eps in eps_list if (r := board.mean_rank[eps][lab]) is not None]
        return (not present, math.fsum(present) / len(present) if present else 0.0, lab)

    board.methods = sorted(labels, key=order)
    board.coverage = class_coverage(board.entries)
    _significance(board)
    board.stability, board.agreement, board.scorer_stability = overlaps(board.entries)
    board.fair_stability = fair_stability(board.entries)
    board.cost = costs(board.entries, labels)


def _sides(by_seed: Mapping[int, Entry], seeds: list[int], eps: float) -> list[tuple[float | None, np.ndarray | None]]:
    """Per seed: the accuracy at ε and the per-image outcomes (None where not kept)."""
    return [(by_seed[s].robust.get(eps), (by_seed[s].outcomes or {}).get(eps)) for s in seeds]


def _significance(board: Board) -> None:
    """The exploratory family (every difference to random with an interval, neither row
    collapsed, not declared primary) adjusted by the grid's correction; the declared primary
    comparisons of this board's regime apart, with their power."""
    corrections = sorted({r.grid.correction or "holm" for r in board.records})
    board.correction = corrections[0] if len(corrections) == 1 else "holm"
    declared = {(c.method, c.against, float(c.fraction), float(c.eps))
                for r in board.records for c in r.grid.primary if c.regime == board.regime}  # fmt: skip
    eps_of = {round(e, 9): e for e in board.protocol.eps}
    results = []
    for method, against, f, eps in sorted(declared):
        eps = eps_of.get(round(eps, 9))
        sides = comparison_sides(board, method, against, f, eps) if eps is not None else None
        if sides is None:
            results.append((method, against, f, eps, None, math.inf))
        else:
            results.append((method, against, f, eps, compare(*sides), power_of(*sides)))
    adjusted = adjust_family({i: r[4] for i, r in enumerate(results) if r[4] is not None}, board.correction)
    board.primary = [PrimaryResult(m, ag, f, eps if eps is not None else math.nan, d, adjusted.p.get(i), power)
                     for i, (m, ag, f, eps, d, power) in enumerate(results)]  # fmt: skip
    primary_keys = {(_row(board, p.method, p.fraction), p.eps) for p in board.primary if p.against == board.random_label}
    family = {(lab, f, eps): d for (lab, f), c in board.cells.items() for eps, d in c.diff.items()
              if d is not None and d.n >= 2 and not c.collapsed and not board.cells[(board.random_label, f)].collapsed
              and ((lab, f), eps) not in primary_keys}  # fmt: skip
    board.family = adjust_family(family, board.correction)


def comparison_sides(board: Board, method: str, against: str, fraction: float, eps: float) -> tuple[list, list] | None:
    """Per seed both finished, each row's (accuracy at ε, per-image outcomes): what
    `significance.compare` and `power_of` take; None when a row is not on the board."""
    a, b = _row(board, method, fraction), _row(board, against, fraction)
    if a is None or b is None:
        return None
    ok_a = {e.seed: e for e in board.entries if e.ok and (e.label, e.fraction) == a}
    ok_b = {e.seed: e for e in board.entries if e.ok and (e.label, e.fraction) == b}
    common = sorted(set(ok_a) & set(ok_b))
    return _sides(ok_a, common, eps), _sides(ok_b, common, eps)


def _row(board: Board, method: str, fraction: float) -> tuple[str, float] | None:
    """The board's row of a method id at a fraction (its label, or its label@scorer)."""
    rows = sorted({(e.label, e.fraction) for e in board.entries if math.isclose(e.fraction, fraction)})
    return next(((lab, f) for lab, f in rows if lab == method or lab.split("@")[0] == method), None)


def degenerate(entry: Entry, num_classes: int | None) -> str | None:
    """Why one seed's model is degenerate, or None: more than `ONE_CLASS_SHARE` of its clean
    predictions in one class (when the record has `metrics.predicted_histogram`), or clean
    accuracy at most `COLLAPSE_FACTOR` × chance (every record)."""
    hist = entry.predicted_histogram
    if hist and sum(hist) and max(hist) > ONE_CLASS_SHARE * sum(hist):
        top = max(range(len(hist)), key=lambda c: (hist[c], -c))
        return f"class {top} predicted for {100 * hist[top] / sum(hist):.0f}% of the images"
    if entry.clean is not None and num_classes:
        limit = COLLAPSE_FACTOR * 100.0 / num_classes
        if entry.clean <= limit + 1e-9:
            return f"clean accuracy {entry.clean:.1f}% ≤ {COLLAPSE_FACTOR:g}× chance ({limit:.1f}%)"
    return None


def _separated_best(intervals: Mapping[str, Interval]) -> str | None:
    """The label with the highest mean, if its interval lies above the runner-up's."""
    ranked = sorted(intervals, key=lambda lab: (-round(intervals[lab].mean, 2), lab))
    if not ranked:
        return None
    if len(ranked) == 1:
        return ranked[0]
    best, runner_up = intervals[ranked[0]], intervals[ranked[1]]
    return ranked[0] if best.above(runner_up) else None


def _average_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Rank 1 = highest; tied values share the mean of the ranks they span."""
    order = sorted(values, key=lambda k: (-values[k], k))
    ranks: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# --------------------------------------------------------------------------- stability and cost
