"""The scoring runs a grid's cells read (`ScoringCache`): per dataset × scoring architecture ×
run seed, the union of every method's signals, served from the published runs beside the
records, then the cache, else made once; and a cell's selection from them."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from corebench.compute.data import Dataset
from corebench.compute.scoring import (
    ScoringResult,
    get_signals,
    needed_epochs,
    outdated_signals,
    scoring_key,
)
from corebench.core.errors import GridStopped, MethodError
from corebench.core.spec import (
    Cell,
    ScoringConfig,
    scoring_seed,
)
from corebench.methods import CoresetMethod, SelectionContext, run_selection
from corebench.methods.base import declared_signals, scoring_need
from corebench.selection.published import Published
from corebench.selection.stability import selection_stability
from corebench.signals import companions, until
from corebench.store.cache_entry import read_meta, remove_entry, signal_names
from corebench.store.inputs import served_digests

INPUTS = "inputs"  # a scoring run's digests, handed from `ScoringCache.contexts` to the record's `inputs`
class ScoringCache:
    """Signals per (dataset, scoring arch, run seed), made once with the union of every need.

    A need is the signals a method reads and the epochs of the scoring schedule it needs
    (`CoresetMethod.scoring_epochs`); a run is made for the union of its needs' signals and the
    largest of their epochs, and each method is served its own signals cut to its own epochs
    (`signals.until`), so what a method sees does not depend on what else is in the grid.
    """

    def __init__(self, cfg: ScoringConfig, cache_dir: Path | None, device: torch.device, progress: bool,
                 threads: int = 1, published: Path | None = None) -> None:
        self.cfg, self.cache_dir, self.device, self.progress = cfg, cache_dir, device, progress
        self.threads = threads
        self.published = Published(published)  # read before the cache (`corebench.selection.published`)
        self.needs: dict[tuple, set[str]] = {}  # per run key: the union of its methods' signals
        self.epochs: dict[tuple, int] = {}  # per run key: the longest of its methods' schedules
        self.made: dict[tuple, tuple[ScoringResult, int]] = {}  # per run key: what it served, for how many epochs

    def keys(self, cell: Cell, method: CoresetMethod) -> list[tuple]:
        """The scoring runs a cell's method reads: (dataset, scoring arch, run seed, regime) each;
        the regime is the grid's `scoring.regime` unless the method names its own
        (`CoresetMethod.scoring_regime`, e.g. Dong et al.'s count on a PGD-AT run)."""
        regime = self.cfg.with_regime(method.scoring_regime()).regime
        return [
            (cell.dataset, cell.scoring_arch, scoring_seed(cell.seed, r), regime)
            for r in range(method.scoring_runs())
        ]

    def cfg_for(self, key: tuple) -> ScoringConfig:
        """The scoring settings of one run: the grid's, under the run's regime."""
        return self.cfg.with_regime(key[3])

    def _need(self, method: CoresetMethod) -> tuple[set[str], int]:
        """The signals a method reads (a MethodError naming an unknown one) and the epochs it needs."""
        signals = set(declared_signals(method))
        epochs = method.scoring_epochs(self.cfg.epochs, self.cfg.snapshots())
        return signals, needed_epochs(self.cfg, signals, epochs)

    def request(self, cell: Cell, method: CoresetMethod) -> None:
        """Add the method's signals and epochs to its runs' needs (a method declaring an unknown
        signal adds nothing: its own cells fail, the run and the other methods' cells do not)."""
        try:
            signals, epochs = self._need(method)
        except MethodError:
            return
        self._add(cell, method, signals, epochs)

    def _add(self, cell: Cell, method: CoresetMethod, signals: set[str], epochs: int) -> None:
        if not signals:  # random: no scoring run at all
            return
        for key in self.keys(cell, method):
            self.needs.setdefault(key, set()).update(signals)
            self.epochs[key] = max(self.epochs.get(key, 0), epochs)

    def key_name(self, key: tuple, data: Dataset) -> str:
        """The run's cache and published key (`scoring.scoring_key`)."""
        return scoring_key(key[0], data, key[1], self.cfg_for(key), key[2], self.threads, self.device)

    def cache_file(self, key: tuple, data: Dataset) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.key_name(key, data)}.npz"

    def published_part(self, key: tuple, data: Dataset) -> tuple[set[str], int]:
        """The signals requested of this run that its published run holds, and the epochs needed."""
        wanted = self.needs.get(key, set())
        need = needed_epochs(self.cfg, wanted, self.epochs.get(key))
        return self.published.holds(self.key_name(key, data), wanted, need), need

    def source(self, key: tuple, data: Dataset) -> str:
        """Where this run's requested signals come from: 'published' (all of them), 'cached'
        (the published run, if any, and the cache hold them all) or 'to make'."""
        from_published, _ = self.published_part(key, data)
        rest = self.needs.get(key, set()) - from_published
        if not rest:
            return "published"
        path = self.cache_file(key, data)
        if path is None or not path.is_file():
            return "to make"
        try:
            names, meta = signal_names(path), read_meta(path)
        except (OSError, ValueError):  # unreadable: get_signals makes it again
            return "to make"
        names -= outdated_signals(meta)
        enough = self.epochs.get(key, 0) <= meta.get("trained_epochs", self.cfg.epochs)
        return "cached" if rest <= names and enough else "to make"

    def cached(self, key: tuple, data: Dataset) -> bool:
        """True when the published runs and the cache hold every signal requested of this run."""
        return self.source(key, data) != "to make"

    def forget(self, key: tuple, data: Dataset) -> None:
        """Remove this run's cache entry, so it is made again (`--force`)."""
        path = self.cache_file(key, data)
        if path is not None:
            remove_entry(path)

    def make(self, key: tuple, data: Dataset) -> ScoringResult:
        """The signals requested of one run: those its published run holds from there, the rest
        from the cache or made now (see `ScoringResult`). A run another worker is making is
        waited for (a lock beside its cache file), then read.
        """
        path = self.cache_file(key, data)
        lock: Any = contextlib.nullcontext()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(path.with_suffix(".lock"))
        from_published, need = self.published_part(key, data)
        served: dict[str, np.ndarray] = {}
        if from_published:  # exactly the runs the committed rows were selected from
            served, run = self.published.read(self.key_name(key, data), from_published, need, data.x_train.shape[0])
            rest = self.needs.get(key, set()) - from_published
            if not rest:
                return ScoringResult(served, run.seconds, True, run.key, run.trained_epochs)
        else:
            rest = self.needs.get(key, set())
        with lock:
            made = get_signals(data, key[0], key[1], self.cfg_for(key), key[2], rest,
                               cache_dir=self.cache_dir, device=self.device, progress=self.progress,
                               threads=self.threads, train_epochs=self.epochs.get(key))  # fmt: skip
        return dataclasses.replace(made, signals={**made.signals, **served}) if served else made

    def contexts(self, cell: Cell, data: Dataset, method: CoresetMethod) -> tuple[SelectionContext, list[dict[str, Any]]]:
        """The method's SelectionContext and the scoring runs it used (`cost.scoring_runs` entries)."""
        wanted, epochs = self._need(method)  # a MethodError naming the method and an unknown signal
        self._add(cell, method, wanted, epochs)
        labels = data.y_train.numpy()
        ctx = SelectionContext(labels=labels, num_classes=data.info.num_classes, runs=({},), seed=cell.seed,
                               dataset=cell.dataset.name, scoring_epochs=self.cfg.epochs)
        if not wanted:
            return ctx, []
        runs, used = [], []
        need = scoring_need(method, self.cfg.epochs, self.cfg.snapshots())  # what the cost table charges
        for key in self.keys(cell, method):
            made = self.made.get(key)
            if made is None or not (wanted <= set(made[0].signals) | set(made[0].failed) and epochs <= made[1]):
                try:
                    self.made[key] = (self.make(key, data), self.epochs[key])
                except Exception as exc:  # not the cell's own failure: it would fail every cell after it
                    raise scoring_failed(key, exc) from exc
            res = self.made[key][0]
            lost = sorted(wanted & set(res.failed))
            if lost:
                raise MethodError(f"method {method.name!r}: signal {lost[0]!r} was not recorded: {res.failed[lost[0]]}")
            runs.append(until({k: res.signals[k] for k in wanted | companions(wanted)}, epochs))
            used.append({"key": res.key, "seed": key[2], "epochs": res.epochs, "seconds": round(res.seconds, 3),
                         "regime": key[3], "epochs_needed": need.epochs, "passes_needed": need.passes,
                         **{INPUTS: {"key": res.key, "epochs": epochs, "signals": served_digests(runs[-1])}}})
        return dataclasses.replace(ctx, runs=tuple(runs)), used


def run_label(key: tuple) -> str:
    """A scoring run's key as words: 'digits × resnet18 × seed 123' (× its regime unless standard)."""
    regime = f" × {key[3]} scoring" if key[3] != "standard" else ""
    return f"{key[0].label} × {key[1].label} × seed {key[2]}{regime}"


def scoring_failed(key: tuple, exc: BaseException) -> GridStopped:
    """The one line a grid stops with when one of its scoring runs cannot be made."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return GridStopped(f"scoring run {run_label(key)} failed ({type(exc).__name__}: {first}); "
                       f"the grid stopped, finished records are kept")


def select_indices(cell: Cell, data: Dataset, method: CoresetMethod | None, scorer: ScoringCache,
                   stability: bool = False) -> tuple[np.ndarray, list[dict[str, Any]], float, Any]:
    """Kept indices for a cell, the scoring runs its selection used, the selection seconds, and
    with `stability` the record's stability block and the single-run indices
    (`selection_stability`; None for full data)."""
    n = data.x_train.shape[0]
    if method is None:
        return np.arange(n, dtype=np.int64), [], 0.0, None
    ctx, used = scorer.contexts(cell, data, method)
    start = time.perf_counter()
    indices = run_selection(method, ctx, cell.fraction)
    seconds = time.perf_counter() - start
    measured = selection_stability(method, ctx, cell.fraction, indices) if stability else None
    return indices, used, seconds, measured
