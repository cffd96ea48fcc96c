"""What a board says about the coresets themselves rather than the models trained on them: how
much they overlap (across seeds, across scorers, and with `AGREEMENT_WITH`'s at the same seed),
how many classes they cover, and what choosing and training them cost. Read from the board's
`Entry`s (`corebench.boards.board`), returned as plain values."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from corebench.boards.stats import jaccard
from corebench.core.spec import FULL_DATA
from corebench.store.results import read_indices

if TYPE_CHECKING:
    from corebench.boards.board import Entry

# Whose coreset every other method's is compared with at the same seed: does "easy" mean the same
# thing to another score, or under an adversarial scoring run (issue 22)? The suite starts from it.
AGREEMENT_WITH = "easycore"
MIN_CLASS_SAMPLES = 5  # a class with fewer samples in a coreset is not counted as covered


@dataclass(frozen=True)
class Cost:
    """A method's cost per seed: its scoring runs, and training at each fraction."""

    scoring_runs: float | None  # distinct scoring runs per seed (None: not recorded)
    scoring_epochs: float | None  # the epochs its signals need, summed over its runs
    scoring_s: float | None  # each run's seconds × epochs needed / epochs trained
    train: dict[float, tuple[float | None, float | None]]  # fraction -> (steps, seconds), seed means
    scoring_passes: float | None = None  # measurement passes its signals need (None: unknown)


@dataclass(frozen=True)
class FairStability:
    """Selection stability on equal footing (one scoring run per selection), from the records'
    `stability` blocks; each mean is over the seeds that recorded it (None: none did)."""

    jaccard: tuple[float, int] | None  # single-run selections across seeds: (mean, pairs)
    spearman: float | None  # single-run scores of runs 0 and 1 within a cell
    own: float | None  # the same signals under another seed
    ties: float | None  # samples tied at the boundary
    runs_averaged: float | None  # what the board's other stability table compares


def classes_covered(histogram: tuple[int, ...]) -> tuple[int, float]:
    """(classes with at least `MIN_CLASS_SAMPLES` samples, largest class's share of the coreset)."""
    total = sum(histogram)
    return sum(c >= MIN_CLASS_SAMPLES for c in histogram), (max(histogram) / total if total else 0.0)


def class_coverage(entries: list[Entry]) -> dict[tuple[str, float], list[tuple[int, float]]]:
    """Per label × fraction, `classes_covered` of each seed's coreset (in seed order)."""
    out: dict[tuple[str, float], list[tuple[int, float]]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: (e.label, e.fraction, e.seed)):
        if e.ok and e.method != FULL_DATA and e.class_histogram:
            out[(e.label, e.fraction)].append(classes_covered(e.class_histogram))
    return dict(out)


Overlap = dict[tuple[str, float], tuple[float, int]]  # (label, fraction) -> (mean Jaccard, pairs)


def overlaps(entries: list[Entry]) -> tuple[Overlap, Overlap, Overlap]:
    """Mean Jaccard overlap of the coresets across seeds (same label), with `AGREEMENT_WITH`'s
    at the same seed, and across scorers (by the label without '@scorer')."""
    stability: Overlap = {}
    agreement: Overlap = {}
    chosen: dict[tuple[str, float], dict[int, str]] = defaultdict(dict)
    by_scorer: dict[tuple[str, float, int], dict[str, str]] = defaultdict(dict)
    for e in entries:
        if e.method == FULL_DATA or e.indices is None:
            continue
        chosen[(e.label, e.fraction)][e.seed] = e.indices
        by_scorer[(e.base_label, e.fraction, e.seed)][e.scoring_arch] = e.indices
    cache: dict[str, np.ndarray | None] = {}
    for key, paths in sorted(chosen.items()):
        pairs = [jaccard(a, b) for a, b in combinations(_load_all(paths.values(), cache), 2)]
        if pairs:
            stability[key] = (math.fsum(pairs) / len(pairs), len(pairs))
    for (lab, f), paths in sorted(chosen.items()):  # same seed, against the reference method's coreset
        ref = chosen.get((AGREEMENT_WITH, f), {})
        if lab == AGREEMENT_WITH or not ref:
            continue
        pairs = [jaccard(*both) for s in sorted(paths.keys() & ref.keys())
                 if len(both := _load_all([paths[s], ref[s]], cache)) == 2]  # fmt: skip
        if pairs:
            agreement[(lab, f)] = (math.fsum(pairs) / len(pairs), len(pairs))
    across: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (base, f, _), paths in sorted(by_scorer.items()):
        across[(base, f)] += [jaccard(a, b) for a, b in combinations(_load_all(paths.values(), cache), 2)]
    return stability, agreement, {k: (math.fsum(v) / len(v), len(v)) for k, v in across.items() if v}


def fair_stability(entries: list[Entry]) -> dict[tuple[str, float], FairStability]:
    """Per label × fraction, the equal-footing measures of the records that have them."""
    groups: dict[tuple[str, float], list[Entry]] = defaultdict(list)
    for e in entries:
        if e.ok and e.stability is not None and e.method != FULL_DATA:
            groups[(e.label, e.fraction)].append(e)
    cache: dict[str, np.ndarray | None] = {}
    out = {}
    for key, group in sorted(groups.items()):
        group.sort(key=lambda e: e.seed)
        pairs = [jaccard(a, b) for a, b in combinations(_load_all([e.single_run for e in group], cache), 2)]

        def mean(field_name: str, group: list[Entry] = group) -> float | None:
            values = [v for e in group if (v := getattr(e.stability, field_name)) is not None]
            return math.fsum(values) / len(values) if values else None

        out[key] = FairStability((math.fsum(pairs) / len(pairs), len(pairs)) if pairs else None,
                                 mean("single_run_spearman"), mean("own_randomness_jaccard"),
                                 mean("boundary_ties"), mean("runs_averaged"))  # fmt: skip
    return out


def _load_all(paths: Any, cache: dict[str, np.ndarray | None]) -> list[np.ndarray]:
    """The readable index arrays among `paths` (sorted as `Path`s sort, by parts; as written by the store)."""
    out = []
    for p in sorted(paths, key=lambda p: p.split(os.sep)):
        if p not in cache:
            cache[p] = read_indices(p)
        if cache[p] is not None:
            out.append(cache[p])
    return out


def costs(entries: list[Entry], labels: list[str]) -> dict[str, Cost]:
    """Per method: scoring runs per seed (each distinct run once) and training per fraction."""
    out: dict[str, Cost] = {}
    by_label: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.ok:
            by_label[FULL_DATA if e.method == FULL_DATA else e.label].append(e)
    for lab in [*labels, FULL_DATA]:
        entries = by_label.get(lab, [])
        if not entries:
            continue
        seeds = sorted({e.seed for e in entries})
        # per seed, each distinct run once: (epochs needed, seconds charged, passes needed)
        runs: dict[int, dict[str, tuple[float, float, int | None]]] = {s: {} for s in seeds}
        legacy: dict[int, float] = {}
        for e in entries:
            for key, trained, seconds, needed, passes in e.scoring_runs or ():
                charged = seconds if needed >= trained else seconds * needed / trained
                runs[e.seed][key] = (needed, charged, passes)
            if e.scoring_runs is None and e.scoring_s is not None:
                legacy[e.seed] = max(legacy.get(e.seed, 0.0), e.scoring_s)
        passes = None
        if any(legacy.values()):  # schema-1 records: the cell's scoring seconds, no run detail
            n_runs, epochs, seconds = None, None, math.fsum(legacy.values()) / len(legacy)
        else:
            n_runs = math.fsum(len(runs[s]) for s in seeds) / len(seeds)
            epochs = math.fsum(run[0] for s in seeds for run in runs[s].values()) / len(seeds)
            seconds = math.fsum(run[1] for s in seeds for run in runs[s].values()) / len(seeds)
            counted = [run[2] for s in seeds for run in runs[s].values()]
            if all(p is not None for p in counted):
                passes = math.fsum(counted) / len(seeds)
        train: dict[float, tuple[float | None, float | None]] = {}
        for f in sorted({e.fraction for e in entries}):
            at = [e for e in entries if e.fraction == f]
            steps = [e.train_steps for e in at if e.train_steps is not None]
            secs = [e.train_s for e in at if e.train_s is not None]
            train[f] = (math.fsum(steps) / len(steps) if steps else None, math.fsum(secs) / len(secs) if secs else None)
        out[lab] = Cost(n_runs, epochs, seconds, train, passes)
    return out


def expected_random_jaccard(fraction: float) -> float:
    """E|A ∩ B| / |A ∪ B| for two independent uniform subsets of one size: f / (2 − f)."""
    return fraction / (2.0 - fraction)
