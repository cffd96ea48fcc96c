"""One board's numbers: records grouped into boards, then aggregated over seeds.

A board is one grid × dataset × arch × regime × evaluation protocol. For every method
(row label) × fraction it holds, at every evaluation ε:

- the robust and clean accuracy with a 95% interval: over seeds (t-interval) for several
  seeds, over the evaluated test images (exact binomial) for one (`corebench.stats`);
- the difference to random, paired over seeds and, where the records keep per-image outcomes,
  over the test images too; significance adjusted across the board's family, and the grid's
  declared primary comparisons apart (`corebench.significance`);
- whether the model collapsed: mean clean accuracy at most 1.5× chance (1.5/K). A collapsed
  model predicts nearly one class, so its robust accuracy equals its clean accuracy and says
  nothing about robustness: it is never best and never ranked;
- the best method per fraction, only when its interval lies above the runner-up's;
- selection stability: the mean Jaccard overlap of the coresets chosen with different
  scoring seeds (cells of different seeds), and across scoring architectures;
- cost: the scoring runs a method's selection needs (once per seed, however many fractions
  or methods share them) and the training steps and seconds, relative to full-data training.

Determinism: everything is a function of the records' contents, iterated in sorted order.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from corebench.protocol import Protocol
from corebench.results import read_indices, robust_by_eps
from corebench.significance import Adjusted, adjust_family, compare, power_of, robust_outcomes
from corebench.spec import FULL_DATA, slug, stable_hash
from corebench.stats import Interval, PairedDiff, jaccard, seeds_interval

log = logging.getLogger(__name__)

RANDOM = "random"
COLLAPSE_FACTOR = 1.5  # clean accuracy at most 1.5 × chance (100/K %) marks a collapsed model


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
    indices: Path | None
    scoring_runs: tuple[tuple[str, float, float], ...] | None  # (key, epochs, seconds); None: not recorded
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
    collapsed: bool


@dataclass(frozen=True)
class Cost:
    """A method's cost per seed: its scoring runs, and training at each fraction."""

    scoring_runs: float | None  # distinct scoring runs per seed (None: not recorded)
    scoring_epochs: float | None
    scoring_s: float | None
    train: dict[float, tuple[float | None, float | None]]  # fraction -> (steps, seconds), seed means


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
    records: list[dict[str, Any]] = field(default_factory=list)
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
    cost: dict[str, Cost] = field(default_factory=dict)
    correction: str = "holm"  # the grid's, across the family
    family: Adjusted | None = None  # the exploratory differences to random, keyed (label, fraction, ε)
    primary: list[PrimaryResult] = field(default_factory=list)

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


def entry_of(record: Mapping[str, Any], protocol: Protocol) -> Entry:
    """The parts of a (validated) record a board uses."""
    cell, metrics = record["cell"], record.get("metrics") or {}
    ok = record["status"] == "ok"
    robust = {eps: pair[1 if protocol.autoattack_enabled else 0] for eps, pair in robust_by_eps(record).items()}
    coreset = record.get("coreset") or {}
    path = Path(record["_path"])
    cost = record.get("cost") or {}
    timings = record.get("timings") or {}
    training = record.get("training") or {}
    runs = None if "scoring_runs" not in cost else tuple(
        (str(r["key"]), float(r.get("epochs") or 0), float(r.get("seconds") or 0)) for r in cost["scoring_runs"]
    )
    scorer = cell["scoring_arch"]
    label = cell["method_label"]
    return Entry(
        label=label,
        method=cell["method"],
        base_label=label.removesuffix(f"@{scorer}"),
        scoring_arch=scorer,
        fraction=float(cell["fraction"]),
        seed=int(cell["seed"]),
        ok=ok,
        error=record.get("error"),
        clean=metrics.get("clean_acc") if ok else None,
        n_eval=metrics.get("n_eval") if ok else None,
        robust=robust,
        num_classes=len(coreset["class_histogram"]) if coreset.get("class_histogram") else None,
        indices=path.with_name(coreset["indices_file"]) if coreset.get("indices_file") else None,
        scoring_runs=runs,
        scoring_s=timings.get("scoring_s"),
        train_steps=cost.get("train_steps", training.get("steps")),
        train_s=cost.get("train_s", timings.get("train_s")),
        path=path,
        outcomes=robust_outcomes(record, protocol.autoattack_enabled) if ok else None,
    )


def build_boards(
    records: list[dict], problems: list[tuple[Path, str]], results_dir: Path
) -> tuple[list[Board], list[tuple[Path, str]]]:
    """Group valid records (from `results.scan`, which refuses two records of one cell) into
    boards, one per protocol."""
    groups: dict[tuple[str, str, str, str], dict[str, Board]] = defaultdict(dict)
    problems = list(problems)
    for rec in records:
        cell = rec["cell"]
        key = (rec["grid"]["name"], cell["dataset"], cell["arch"], cell["regime"])
        protocol = Protocol.of(rec["config"]["evaluation"])
        board = groups[key].get(protocol.key)
        if board is None:
            board = groups[key][protocol.key] = Board(*key, protocol=protocol)
        board.records.append(rec)
        board.entries.append(entry_of(rec, protocol))
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
                    board.skipped.append((_rel(path, results_dir), reason))
                break


def _rel(path: Path, root: Path) -> str:
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
        chance = 100.0 / board.num_classes if board.num_classes else None
        collapsed = bool(rows) and chance is not None and clean.mean <= COLLAPSE_FACTOR * chance + 1e-9
        return CellStats(len(rows), failed.get(key, 0), clean, robust, diff, collapsed)

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
    _significance(board)
    _stability(board)
    _cost(board, labels)


def _sides(by_seed: Mapping[int, Entry], seeds: list[int], eps: float) -> list[tuple[float | None, np.ndarray | None]]:
    """Per seed: the accuracy at ε and the per-image outcomes (None where not kept)."""
    return [(by_seed[s].robust.get(eps), (by_seed[s].outcomes or {}).get(eps)) for s in seeds]


def _significance(board: Board) -> None:
    """The exploratory family (every difference to random with an interval, neither row
    collapsed, not declared primary) adjusted by the grid's correction; the declared primary
    comparisons of this board's regime apart, with their power."""
    corrections = sorted({(r.get("grid") or {}).get("correction") or "holm" for r in board.records})
    board.correction = corrections[0] if len(corrections) == 1 else "holm"
    declared = {(c["method"], c["against"], float(c["fraction"]), float(c["eps"]))
                for r in board.records for c in (r.get("grid") or {}).get("primary") or ()
                if c["regime"] == board.regime}  # fmt: skip
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


def _stability(board: Board) -> None:
    """Mean Jaccard overlap of the coresets across seeds (same label) and across scorers."""
    chosen: dict[tuple[str, float], dict[int, Path]] = defaultdict(dict)
    by_scorer: dict[tuple[str, float, int], dict[str, Path]] = defaultdict(dict)
    for e in board.entries:
        if e.method == FULL_DATA or e.indices is None:
            continue
        chosen[(e.label, e.fraction)][e.seed] = e.indices
        by_scorer[(e.base_label, e.fraction, e.seed)][e.scoring_arch] = e.indices
    cache: dict[Path, np.ndarray | None] = {}
    for key, paths in sorted(chosen.items()):
        pairs = [jaccard(a, b) for a, b in combinations(_load_all(paths.values(), cache), 2)]
        if pairs:
            board.stability[key] = (math.fsum(pairs) / len(pairs), len(pairs))
    across: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (base, f, _), paths in sorted(by_scorer.items()):
        across[(base, f)] += [jaccard(a, b) for a, b in combinations(_load_all(paths.values(), cache), 2)]
    board.scorer_stability = {k: (math.fsum(v) / len(v), len(v)) for k, v in across.items() if v}


def _load_all(paths: Any, cache: dict[Path, np.ndarray | None]) -> list[np.ndarray]:
    """The readable index arrays among `paths` (sorted, as written by the store)."""
    out = []
    for p in sorted(paths):
        if p not in cache:
            cache[p] = read_indices(p)
        if cache[p] is not None:
            out.append(cache[p])
    return out


def _cost(board: Board, labels: list[str]) -> None:
    """Per method: scoring runs per seed (each distinct run once) and training per fraction."""
    by_label: dict[str, list[Entry]] = defaultdict(list)
    for e in board.entries:
        if e.ok:
            by_label[FULL_DATA if e.method == FULL_DATA else e.label].append(e)
    for lab in [*labels, FULL_DATA]:
        entries = by_label.get(lab, [])
        if not entries:
            continue
        seeds = sorted({e.seed for e in entries})
        runs: dict[int, dict[str, tuple[float, float]]] = {s: {} for s in seeds}
        legacy: dict[int, float] = {}
        for e in entries:
            for key, epochs, seconds in e.scoring_runs or ():
                runs[e.seed][key] = (epochs, seconds)
            if e.scoring_runs is None and e.scoring_s is not None:
                legacy[e.seed] = max(legacy.get(e.seed, 0.0), e.scoring_s)
        if any(legacy.values()):  # schema-1 records: the cell's scoring seconds, no run detail
            n_runs, epochs, seconds = None, None, math.fsum(legacy.values()) / len(legacy)
        else:
            n_runs = math.fsum(len(runs[s]) for s in seeds) / len(seeds)
            epochs = math.fsum(ep for s in seeds for ep, _ in runs[s].values()) / len(seeds)
            seconds = math.fsum(sec for s in seeds for _, sec in runs[s].values()) / len(seeds)
        train: dict[float, tuple[float | None, float | None]] = {}
        for f in sorted({e.fraction for e in entries}):
            at = [e for e in entries if e.fraction == f]
            steps = [e.train_steps for e in at if e.train_steps is not None]
            secs = [e.train_s for e in at if e.train_s is not None]
            train[f] = (math.fsum(steps) / len(steps) if steps else None, math.fsum(secs) / len(secs) if secs else None)
        board.cost[lab] = Cost(n_runs, epochs, seconds, train)


def expected_random_jaccard(fraction: float) -> float:
    """E|A ∩ B| / |A ∪ B| for two independent uniform subsets of one size: f / (2 − f)."""
    return fraction / (2.0 - fraction)
