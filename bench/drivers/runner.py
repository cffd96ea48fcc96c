"""The grid runner: cells -> scoring signals -> selection -> training -> evaluation -> records.

One straight line per cell. Scoring runs are shared by every cell of a dataset × scoring
architecture × seed (and cached on disk), so a grid costs one proxy run per group (n of them
for a method that averages n runs: run r of seed s is seeded `spec.scoring_seed(s, r)`, never
s itself, the target model's seed) plus one training per cell. A run trains as many epochs of
the scoring schedule as the most demanding method sharing it needs (`signals.until`). Every
finished cell is one JSON record written atomically; a failed cell gets a record with its error
(its traceback in `seed<N>.log` beside it) and the grid goes on; a failure that is no cell's own
(a scoring run, the cache) stops the grid with one line (`GridStopped`); re-running skips finished cells, so a
2,000-cell grid split over many jobs (`shard`) survives pre-emption.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from corebench import __version__
from corebench.cells.identity import cell_id as identity_hash
from corebench.cells.identity import cell_settings, differences, record_settings
from corebench.compute.checkpoint import Checkpoint
from corebench.compute.data import Dataset, load_dataset
from corebench.compute.evaluate import EvalResult, evaluate
from corebench.compute.models import create_model, default_scoring_arch
from corebench.compute.optim import resolve_device, torch_threads
from corebench.compute.scoring import (
    ScoringResult,
    get_signals,
    needed_epochs,
    outdated_signals,
    scoring_key,
    seeded,
)
from corebench.compute.train import train_model
from corebench.core.errors import BenchError, GridStopped, MethodError, PathError, ResultsError
from corebench.core.files import cache_root, confined, writable_folder, write_atomic
from corebench.core.spec import (
    FULL_DATA,
    ArchSpec,
    Cell,
    DatasetSpec,
    GridSpec,
    MethodSpec,
    ScoringConfig,
    scoring_seed,
    slug,
)
from corebench.drivers.guard import Deadline
from corebench.methods import CoresetMethod, SelectionContext, create_method, run_selection
from corebench.methods.base import declared_signals, scoring_need
from corebench.methods.registry import git_commit, method_source, plugin_fingerprint
from corebench.selection.published import Published, folder_for
from corebench.selection.stability import selection_stability
from corebench.signals import companions, until
from corebench.store.cache_entry import read_meta, remove_entry, signal_names
from corebench.store.claims import holding
from corebench.store.inputs import changed_inputs, file_digest, served_digests
from corebench.store.record import SCHEMA_VERSION, CellConfig, Record, pack_bits
from corebench.store.results import (
    DONE,
    MISSING,
    STALE,
    read_record,
    record_state,
    write_indices,
    write_record,
)

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"  # per-epoch training checkpoints, under the cache folder
INPUTS = "inputs"  # a scoring run's digests, handed from `ScoringCache.contexts` to the record's `inputs`


def default_cache_dir() -> Path:
    """Where scoring signals are cached: $COREBENCH_CACHE, else ~/.cache/corebench."""
    return cache_root()


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    busy: int = 0  # cells another worker was running (their claim was live)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (record path, error)
    stale: list[str] = field(default_factory=list)  # finished records made by other settings or data: rerun
    changed: list[tuple[str, str]] = field(default_factory=list)  # (done record, which of its inputs changed)
    outside: list[str] = field(default_factory=list)  # records in the grid's folder that are no cell of it
    deferred: list[str] = field(default_factory=list)  # not started: they would not have ended by the deadline


def prepare(spec: GridSpec, datasets: Iterable[DatasetSpec]) -> dict[DatasetSpec, Dataset]:
    """Load the datasets and check what needs them (`grid.check_against_data`): every error a
    user can fix surfaces here, as one line, before any scoring or training starts."""
    from corebench.cells.grid import check_against_data

    loaded = {ds: load_dataset(ds) for ds in dict.fromkeys(datasets)}
    check_against_data(spec, loaded)
    return loaded


def methods_of(cells: Iterable[Cell]) -> dict[MethodSpec, CoresetMethod]:
    return {m: create_method(m.name, **m.params) for m in {c.method for c in cells} if m.name != FULL_DATA}


@dataclass(frozen=True)
class CellState:
    """A cell of the grid with its identity, computed once (`cell_state`) and handed to
    everything that needs it: running, claiming, status, Slurm and `plan`."""

    cell: Cell
    path: Path  # its record, inside the results folder
    state: str  # `results.record_state`'s: done, stale, failed, missing, malformed
    cell_id: str
    settings: dict[str, Any]  # canonical settings (`identity.cell_settings`); the id is their hash
    options: dict[str, Any]  # the method's options at the cell's fraction on its dataset
    options_error: BenchError | None = None  # the method has no option value there (CCS β)


def cell_state(spec: GridSpec, cell: Cell, data: Dataset, method: CoresetMethod | None,
               results_dir: Path) -> CellState:
    """The one place a cell's id is computed (see `corebench.cells.identity`)."""
    path = confined(results_dir, cell.relpath(spec.name))
    if path.exists() and not path.is_file():
        raise PathError(f"{path}: is not a file; a cell's record goes there (move it away)")
    options, error = cell_options(cell, method)
    settings = settings_of(spec, cell, data, options)
    cid = identity_hash(settings)
    return CellState(cell, path, record_state(path, cid), cid, settings, options, error)


def settings_of(spec: GridSpec, cell: Cell, data: Dataset, options: dict[str, Any]) -> dict[str, Any]:
    """A grid cell's canonical settings (`identity.cell_settings`): the one place they are built.
    A plug-in method's source code hash enters them (`method_code`), a built-in's does not."""
    code = plugin_fingerprint(cell.method.name) if cell.method.name != FULL_DATA else None
    return cell_settings(cell.key(), options, cell_config(spec, cell, data), data.fingerprint(), code)


def cell_states(spec: GridSpec, cells: Iterable[Cell], datasets: dict[DatasetSpec, Dataset],
                methods: dict[MethodSpec, CoresetMethod], results_dir: Path) -> list[CellState]:
    """Every cell with its record's state and identity."""
    return [cell_state(spec, c, datasets[c.dataset], methods.get(c.method), results_dir) for c in cells]


def cell_options(cell: Cell, method: CoresetMethod | None) -> tuple[dict[str, Any], BenchError | None]:
    """The method's options as used at the cell's fraction on its dataset (what the record
    stores), and the error when it has none there (the grid parser reports that first; a
    hand-built GridSpec fails the cell with it)."""
    if method is None:
        return {}, None
    try:
        return method.options_for(cell.fraction, cell.dataset.name), None
    except BenchError as exc:
        return method.options(), exc


@dataclass
class Work:
    """What is still to do for a grid (or some of its cells), written once: the data loaded and
    checked, the methods built, every cell's state, the cells to run, and the scoring runs they
    need with those the cache does not hold yet. `run`, Slurm's `submit_grid`, `plan` and
    `status` all start here."""

    spec: GridSpec
    datasets: dict[DatasetSpec, Dataset]
    methods: dict[MethodSpec, CoresetMethod]
    states: list[CellState]
    todo: list[CellState]
    scorer: ScoringCache

    @property
    def done(self) -> list[CellState]:
        return [s for s in self.states if s.state == DONE]

    @property
    def stale(self) -> list[CellState]:
        return [s for s in self.states if s.state == STALE]

    def runs(self) -> list[tuple]:
        """Every scoring run the cells to do read (key: dataset, scoring arch, run seed)."""
        return [key for key, signals in self.scorer.needs.items() if signals]

    def missing_runs(self) -> list[tuple]:
        """The scoring runs the cells to do read that the cache does not hold yet."""
        return [key for key in self.runs() if not self.scorer.cached(key, self.datasets[key[0]])]


def plan_work(spec: GridSpec, results_dir: Path | None, *, cells: list[Cell] | None = None,
              cache: Path | None = None, force: bool = False, device: torch.device | None = None,
              progress: bool = False, published: Path | None = None,
              datasets: dict[DatasetSpec, Dataset] | None = None) -> Work:
    """Load and check the data, build the methods, compute every cell's state, keep the cells
    to run (not done, or all with `force`) and request their scoring runs. Scoring runs are
    read from `published` first (default: the grid's published runs in the results folder,
    `published.folder_for`; none with `force`, which makes every run again). `datasets` given
    (already loaded, or shaped only for sizing: benchmarks/gpu_sizing.py) are used as they are."""
    cells = spec.cells() if cells is None else cells
    datasets = prepare(spec, [c.dataset for c in cells]) if datasets is None else datasets
    methods = methods_of(cells)
    if results_dir is not None:
        states = cell_states(spec, cells, datasets, methods, results_dir)
    else:  # nothing run yet: every cell is to do
        states = [CellState(c, Path(), MISSING, "", {}, {}) for c in cells]
    todo = [s for s in states if force or s.state != DONE]
    if published is None and results_dir is not None and not force:
        published = folder_for(results_dir, spec.name)
    scorer = ScoringCache(spec.scoring, confined(cache, "scoring") if cache is not None else None,
                          device or torch.device("cpu"), progress, threads=spec.threads,
                          published=None if force else published)
    for s in todo:  # every run's signal needs are known up front, so one run records them all
        if s.cell.method.name != FULL_DATA:
            scorer.request(s.cell, methods[s.cell.method])
    return Work(spec, datasets, methods, states, todo, scorer)


def stale_reason(state: CellState, limit: int = 3) -> str:
    """What differs between a stale record's settings and the grid's ('' unless stale)."""
    if state.state != STALE:
        return ""
    try:
        made = record_settings(read_record(state.path))
    except (ResultsError, OSError, ValueError, KeyError) as exc:
        return f"its settings cannot be read ({type(exc).__name__})"
    changed = differences(made, state.settings)
    if not changed:  # same settings, another id: made by an older identity rule
        return "same settings, an id from an older identity rule"
    more = f"; and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def grid_states(spec: GridSpec, results_dir: str | Path) -> list[CellState]:
    """Every cell of the grid with its record's state (`corebench status --grid`); loads the data."""
    return plan_work(spec, Path(results_dir)).states


def run_grid(
    spec: GridSpec,
    results_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    force: bool = False,
    scoring_only: bool = False,
    workers: int | None = 1,
    progress: bool = True,
    cells: list[Cell] | None = None,
    deadline: float | None = None,
    estimator: Callable[[Work, torch.device], dict[str, float]] | None = None,
) -> RunSummary:
    """Run every cell of `spec` (those of shard k of n) without a valid record, writing one each.

    A cell is done when its record finished and carries the cell's id (`cell_id`); a record
    made by other settings or data is stale, reported and rerun. Folders, device, data, models
    and attacks are checked first. Every process runs with `spec.threads` torch threads, so the
    records do not depend on `workers`: with `workers` > 1 the scoring runs are made here
    first, then the cells are trained and attacked in that many processes. Each cell is claimed
    first (`corebench.store.claims`): a cell another worker is running is left to it. `cells` runs
    those cells of the grid instead of all of them (a Slurm task's share). `workers` None means
    one per GPU on a machine with several (`default_workers`), else 1; on CUDA the workers take
    the visible GPUs in turn (`worker_devices`).

    `deadline` (seconds since the epoch): no cell starts that is not expected to end by then
    (`corebench.drivers.guard`); cells run seed by seed, so what finishes is whole seeds first, and the
    cells not started are `summary.deferred`. `estimator(work, device)` gives each cell's
    expected seconds by cell id (the CLI passes `plan.cell_seconds`).
    """
    results_dir = writable_folder(results_dir, "results_dir")
    cache = writable_folder(Path(cache_dir) if cache_dir is not None else default_cache_dir(), "cache_dir")
    for sub in ("scoring", CHECKPOINTS):  # a link out of the cache fails now, not after compute
        confined(cache, sub)
    device = resolve_device(spec.device)
    workers = default_workers(device) if workers is None else workers
    k, n = shard
    cells = [c for i, c in enumerate(spec.cells() if cells is None else cells) if i % n == k]
    summary = RunSummary(total=len(cells))
    with torch_threads(spec.threads):
        work = plan_work(spec, results_dir, cells=cells, cache=cache, force=force, device=device, progress=progress)
        for s in work.done:
            if not force:
                summary.skipped += 1
                checkpoint_for(cache, s.cell_id).delete()  # left by a run killed after writing the record
        summary.changed, outside = audit(spec, work.states, results_dir, cache)
        if n == 1 and len(cells) == len(spec.cells()):  # a shard's or a Slurm task's cells are not the grid's
            summary.outside = outside
        for s in work.stale:
            summary.stale.append(str(s.path))
            log.warning("%s: finished under other settings or data (its cell id differs); rerunning", s.path)
        log.info("grid %s: %d cells in this shard, %d already done, %d stale, %d to run",
                 spec.name, len(cells), summary.skipped, len(summary.stale), len(work.todo))
        if not work.todo:
            return summary
        if force:  # --force remakes the scoring runs too (a fixed plug-in signal's old values go)
            for key in work.runs():
                work.scorer.forget(key, work.datasets[key[0]])
        guard = None
        if deadline is not None and not scoring_only:
            seeds = {seed: i for i, seed in enumerate(dict.fromkeys(s.cell.seed for s in work.todo))}
            work.todo.sort(key=lambda s: seeds[s.cell.seed])  # stable: grid order within a seed
            guard = Deadline(deadline, estimator(work, device) if estimator is not None else {})
            log.info("deadline %s: no cell starts that would not end by then", guard.label())
        _run_todo(work, results_dir, cache, device, summary, scoring_only=scoring_only, workers=workers,
                  progress=progress, force=force, guard=guard)
    return summary


def audit(spec: GridSpec, states: list[CellState], results_dir: Path, cache: Path | None
          ) -> tuple[list[tuple[str, str]], list[str]]:
    """The done records whose inputs changed (`inputs.changed_inputs`, with what changed), and
    the records in the grid's folder that are no cell of it (a seed the grid does not have)."""
    changed = []
    for s in states:
        if s.state == DONE:
            why = changed_inputs(read_record(s.path), s.path, cache)
            if why:
                changed.append((str(s.path), "; ".join(why)))
    cells = {s.path.resolve() for s in states}
    folder = results_dir / slug(spec.name)
    outside = sorted(str(p) for p in folder.rglob("seed*.json") if p.resolve() not in cells) if folder.is_dir() else []
    return changed, outside


def _run_todo(work: Work, results_dir: Path, cache: Path, device: torch.device, summary: RunSummary, *,
              scoring_only: bool, workers: int, progress: bool, force: bool = False,
              guard: Deadline | None = None) -> None:
    spec, datasets, methods, scorer = work.spec, work.datasets, work.methods, work.scorer
    if scoring_only:
        for s in work.todo:
            if s.cell.method.name != FULL_DATA:
                scorer.contexts(s.cell, datasets[s.cell.dataset], methods[s.cell.method])
        return
    # with several workers, the runs not cached yet are made first, in the workers' pool
    runs = [(key, frozenset(scorer.needs[key]), scorer.epochs.get(key)) for key in work.missing_runs()] if workers > 1 else []

    from tqdm import tqdm

    if workers > 1:
        outcomes = _run_parallel(spec, work.todo, results_dir, cache, workers, force, runs, scorer.published.folder,
                                 guard)
    else:
        outcomes = (
            guarded(guard, s, lambda s=s: run_claimed(spec, s, datasets[s.cell.dataset], methods.get(s.cell.method),
                                                      scorer, device, results_dir, cache, progress, force=force))
            for s in work.todo
        )
    for status, path, error in tqdm(outcomes, total=len(work.todo), desc=f"grid {spec.name}", disable=not progress):
        if status == "ok":
            summary.finished += 1
        elif status == "done":  # finished by another worker meanwhile
            summary.skipped += 1
        elif status == "busy":
            summary.busy += 1
        elif status == "deferred":
            summary.deferred.append(path)
        else:
            summary.failed += 1
            summary.failures.append((path, error))


def guarded(guard: Deadline | None, state: CellState,
            run: Callable[[], tuple[str, str, str | None]]) -> tuple[str, str, str | None]:
    """`run()` the cell when it is expected to end before the guard's deadline, else
    ('deferred', path, None); the guard learns how long it took."""
    if guard is None:
        return run()
    if not guard.fits(state.cell_id):
        log.info("%s: deferred (expected %.0f s, past the deadline %s)", state.path,
                 guard.expected(state.cell_id), guard.label())
        return "deferred", str(state.path), None
    start = time.time()
    outcome = run()
    guard.observe(state.cell_id, time.time() - start)
    return outcome


def run_claimed(spec: GridSpec, state: CellState, data: Dataset, method: CoresetMethod | None,
                scorer: ScoringCache, device: torch.device, results_dir: Path, cache: Path, progress: bool,
                force: bool = False) -> tuple[str, str, str | None]:
    """Claim the cell and run it: (record status, path, error), or ('done' | 'busy', path, holder)."""
    with holding(state.path, cell_id=state.cell_id, force=force, root=results_dir) as claim:
        if claim.state != "claimed":
            holder = claim.holder
            return claim.state, str(state.path), holder and f"{holder.host} pid {holder.pid} {holder.job}".strip()
        record = run_cell(spec, state.cell, data, method, scorer, device, state.path, progress,
                          results_dir=results_dir, cache_dir=cache, state=state)
    return record.status, str(state.path), record.error


# --------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def _run_parallel(spec: GridSpec, todo: list[CellState], results_dir: Path, cache: Path, workers: int, force: bool,
                  runs: list[tuple[tuple, frozenset[str], int | None]] = (), published: Path | None = None,
                  guard: Deadline | None = None):
    """The scoring `runs` (key, signals, epochs), then the cells, in `workers` spawned processes,
    each with the grid's `threads`; yields (status, path, error) per cell as they finish.

    Every run is made whole before any cell starts, so no two workers wait on one run's lock; a
    run that fails stops the grid (`GridStopped`), as with one worker. Each worker holds its own
    copy of the `guard` and learns from its own cells.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fork after OpenMP/CUDA start is unsafe
    devices = ctx.Queue()  # each worker takes the next device (one GPU each on a multi-GPU machine)
    for dev in worker_devices(resolve_device(spec.device), workers):
        devices.put(str(dev))
    pool = ctx.Pool(workers, initializer=_worker_init,
                    initargs=(spec, results_dir, cache, spec.threads, force, devices, published, guard))
    try:
        for problem in pool.imap_unordered(_worker_scoring, runs):
            if problem:
                raise GridStopped(problem)
        yield from pool.imap_unordered(_worker_cell, todo)
        pool.close()  # let workers exit cleanly (terminating them leaks their semaphores)
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def default_workers(device: torch.device) -> int:
    """Local workers when `--workers` is not given: one per visible GPU when the grid's device is
    CUDA without an index (`auto` or `cuda`), else 1."""
    if device.type == "cuda" and device.index is None:
        return max(1, torch.cuda.device_count())
    return 1


def worker_devices(device: torch.device, workers: int) -> list[torch.device]:
    """The device of each local worker: with a CUDA device without an index, worker i takes GPU
    i mod (visible GPUs), so each GPU trains its own cells; otherwise every worker uses `device`."""
    if device.type == "cuda" and device.index is None:
        count = max(1, torch.cuda.device_count())
        return [torch.device("cuda", i % count) for i in range(workers)]
    return [device] * workers


def _worker_init(spec: GridSpec, results_dir: Path, cache: Path, threads: int, force: bool, devices: Any,
                 published: Path | None = None, guard: Deadline | None = None) -> None:
    torch.set_num_threads(threads)
    device = torch.device(devices.get())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _WORKER.update(spec=spec, results_dir=results_dir, cache=cache, device=device, datasets={}, methods={}, force=force,
                   guard=guard,
                   scorer=ScoringCache(spec.scoring, cache / "scoring", device, progress=False, threads=threads,
                                       published=published))


def _worker_scoring(run: tuple[tuple, frozenset[str], int | None]) -> str:
    """Make one scoring run into the cache; '' or what went wrong."""
    key, signals, epochs = run
    w = _WORKER
    if key[0] not in w["datasets"]:
        w["datasets"][key[0]] = load_dataset(key[0])
    scorer: ScoringCache = w["scorer"]
    scorer.needs[key] = set(signals)
    if epochs is not None:
        scorer.epochs[key] = epochs
    try:
        scorer.make(key, w["datasets"][key[0]])
    except Exception as exc:
        return str(scoring_failed(key, exc))
    finally:
        scorer.needs.pop(key)
        scorer.epochs.pop(key, None)
    return ""


def _worker_cell(state: CellState) -> tuple[str, str, str | None]:
    w = _WORKER
    cell = state.cell
    if cell.dataset not in w["datasets"]:
        w["datasets"][cell.dataset] = load_dataset(cell.dataset)
    method = None
    if cell.method.name != FULL_DATA:
        if cell.method not in w["methods"]:
            w["methods"][cell.method] = create_method(cell.method.name, **cell.method.params)
        method = w["methods"][cell.method]
    return guarded(w["guard"], state, lambda: run_claimed(w["spec"], state, w["datasets"][cell.dataset], method,
                                                          w["scorer"], w["device"], w["results_dir"], w["cache"],
                                                          False, force=w["force"]))


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


def cell_id(spec: GridSpec, cell: Cell, data: Dataset, options: dict[str, Any]) -> str:
    """The id of a cell (`cell_state` computes it with everything else a run needs): the hash
    of its canonical settings (`identity.cell_settings`). The cell's checkpoint is named by it."""
    return identity_hash(settings_of(spec, cell, data, options))


def checkpoint_for(cache_dir: Path | None, cell_id: str) -> Checkpoint | None:
    """A cell's per-epoch training checkpoint: `<cache>/checkpoints/<cell id>.pt`."""
    return Checkpoint(confined(cache_dir, CHECKPOINTS), cell_id) if cache_dir is not None else None


def cell_config(spec: GridSpec, cell: Cell, data: Dataset) -> CellConfig:
    """Every setting that changes the cell's numbers, resolved (ε filled in from the dataset)."""
    return CellConfig(
        dataset=cell.dataset, arch=cell.arch, scoring_arch=cell.scoring_arch, scoring=spec.scoring,
        training=spec.training, attack=spec.attack.resolved(data.info.eps),
        evaluation=spec.evaluation.resolved(data.info.eps), threads=spec.threads,
    )  # fmt: skip


def run_cell(
    spec: GridSpec,
    cell: Cell,
    data: Dataset,
    method: CoresetMethod | None,
    scorer: ScoringCache,
    device: torch.device,
    path: Path,
    progress: bool = True,
    *,
    results_dir: Path | None = None,
    cache_dir: Path | None = None,
    state: CellState | None = None,
) -> Record:
    """Select, train, evaluate one cell and write its record (a failed one on any error); the
    record written, as the `Record` model.

    The record and the kept indices are written inside `results_dir` (when given; `path` must
    resolve inside it); training resumes from and checkpoints to the cell's checkpoint under
    `cache_dir` (when given), which is removed once the record is written.
    """
    start = time.perf_counter()
    config = cell_config(spec, cell, data)
    if state is None:  # a caller outside a grid run: compute the identity as a run does
        state = cell_state(spec, cell, data, method, results_dir or path.parent)
    options, options_error, cid = state.options, state.options_error, state.cell_id
    checkpoint = checkpoint_for(cache_dir, cid)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cid,
        "status": "failed",
        "error": None,
        "grid": grid_ref(spec),
        "cell": cell.key(),
        "method_options": options,
        "config": config,
        "metrics": None,
        "coreset": None,
        "timings": {},
        "versions": versions(),
        "device": device_name(device),
        "method_source": method_source(cell.method.name) if method is not None else None,
        "data": {"name": data.info.name, "source": data.info.source, "fingerprint": data.fingerprint(),
                 "n_train": int(data.x_train.shape[0]), "n_test": int(data.x_test.shape[0]),
                 "num_classes": data.info.num_classes, "notes": list(data.info.notes)},
    }
    try:
        if options_error is not None:
            raise options_error
        indices, scoring_runs, selection_s, measured = select_indices(cell, data, method, scorer, stability=True)
        bound = [r.pop(INPUTS) for r in scoring_runs]  # what the selection read, by digest
        scoring_s = sum(r["seconds"] for r in scoring_runs)
        index_file = path.with_name(path.stem + ".indices.npy")
        write_indices(index_file, indices, root=results_dir)
        record["inputs"] = {"indices": file_digest(index_file), "scoring_runs": bound}
        if measured is not None:
            block, single = measured
            single_file = index_file
            if single is not indices:
                single_file = path.with_name(path.stem + ".single_run.indices.npy")
                write_indices(single_file, single, root=results_dir)
            record["stability"] = {**block, "single_run_indices_file": single_file.name}
        hist = np.bincount(data.y_train.numpy()[indices], minlength=data.info.num_classes)
        record["coreset"] = {
            "n_train": int(data.x_train.shape[0]),
            "size": int(indices.size),
            "indices_file": index_file.name,
            "class_histogram": hist.tolist(),
        }
        t0 = time.perf_counter()
        with seeded(cell.seed, device):
            model = create_model(cell.arch, data.info).to(device)
        trained = train_model(
            model, data, indices, regime=cell.regime, training=config.training,
            attack=config.attack, seed=cell.seed, device=device, progress=progress, checkpoint=checkpoint,
        )
        record["execution"] = trained["execution"]
        t1 = time.perf_counter()
        result = evaluate(model, data, config.evaluation, device, progress=progress)
        t2 = time.perf_counter()
        robust = [
            {"eps": r.eps, "pgd_acc": r.pgd_acc, "autoattack_acc": r.autoattack_acc,
             "autoattack_per_attack": dict(r.autoattack_per_attack)}
            for r in result.robust
        ]  # fmt: skip
        record["metrics"] = {
            "clean_acc": result.clean_acc,
            "pgd_acc": result.pgd_acc,
            "autoattack_acc": result.autoattack_acc,
            "n_eval": result.n_eval,
            "autoattack_per_attack": dict(result.autoattack_per_attack),
            "robust": robust,
            "predicted_histogram": list(result.predicted_histogram) or None,
        }
        record["per_image_outcomes"] = per_image_outcomes(result)
        record["training"] = {"budget": trained["budget"], "epochs": trained["epochs"], "steps": trained["steps"],
                              "seconds": round(trained["seconds"], 3)}
        record["cost"] = {"scoring_runs": scoring_runs, "train_steps": trained["steps"], "train_s": round(t1 - t0, 3)}
        record["timings"] = {
            "scoring_s": round(scoring_s, 3),
            "selection_s": round(selection_s, 4),
            "train_s": round(t1 - t0, 3),
            "eval_s": round(t2 - t1, 3),
        }
        record["status"] = "ok"
    except (KeyboardInterrupt, SystemExit, GridStopped):  # GridStopped: not this cell's failure
        raise
    except Exception as exc:  # the cell fails, the grid goes on
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        if not isinstance(exc, BenchError):
            log.exception("cell %s failed", path)
        else:
            log.error("cell %s failed: %s", path, exc)
            log.debug("cell %s: traceback", path, exc_info=True)  # -v: a plug-in's traceback too
        write_atomic(failure_log(path), lambda f: f.write(traceback.format_exc().encode()), root=results_dir)
    record["timings"]["total_s"] = round(time.perf_counter() - start, 3)
    built = Record.model_validate(record)  # the model the store reads back; written as its JSON form
    write_record(path, built, root=results_dir)
    if built.status == "ok":
        failure_log(path).unlink(missing_ok=True)  # an earlier failure's log
    if checkpoint is not None:
        checkpoint.delete()
    return built


def failure_log(record: Path) -> Path:
    """A failed cell's traceback, beside its record (`seed0.json` -> `seed0.log`)."""
    return record.with_suffix(".log")
def grid_ref(spec: GridSpec) -> dict[str, Any]:
    """The record's `grid`: its name and file, the declared primary comparisons and the correction."""
    primary = [{"method": c.method, "against": c.against, "fraction": c.fraction, "regime": c.regime, "eps": c.eps}
               for c in spec.primary]  # fmt: skip
    return {"name": spec.name, "source": spec.source, "primary": primary, "correction": spec.correction}


def per_image_outcomes(result: EvalResult) -> dict[str, Any]:
    """The evaluation's per-image outcomes as the record keeps them (`record.PerImageOutcomes`)."""
    robust = [{"eps": r.eps, "pgd": pack_bits(r.pgd_correct),
               "autoattack": None if r.autoattack_correct is None else pack_bits(r.autoattack_correct)}
              for r in result.robust]  # fmt: skip
    return {"n": result.n_eval, "clean": pack_bits(result.clean_correct), "robust": robust}


def select_coreset(
    dataset: DatasetSpec,
    arch: ArchSpec | None,
    method: MethodSpec,
    fraction: float,
    *,
    seed: int = 0,
    scoring: ScoringConfig | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    threads: int = 1,
) -> tuple[np.ndarray, ArchSpec]:
    """The sorted indices to KEEP and the scoring architecture used (`corebench select`).

    `arch` None picks a scoring model sized for the dataset (`models.default_scoring_arch`).
    The scoring run goes through the same cache as a grid's (`ScoringCache`, keyed by dataset,
    scoring architecture, scoring settings, seed and threads), so with a grid's settings it
    reuses the grid's scoring run. Checked before the scoring run: the cache folder, the
    device, the method's parameters and that the architecture builds for the dataset."""
    from corebench.cells.grid import check_builds

    cache = writable_folder(cache_dir or default_cache_dir(), "cache_dir")
    dev = resolve_device(device, "select_device")
    impl = None if method.name == FULL_DATA else create_method(method.name, **method.params)
    with torch_threads(threads):
        data = load_dataset(dataset)
        arch = arch or default_scoring_arch(data.info)
        check_builds(arch, data)
        cell = Cell(dataset, arch, arch, "standard", method, fraction, seed)
        scorer = ScoringCache(scoring or ScoringConfig(), confined(cache, "scoring"), dev, progress, threads=threads)
        indices, _, _, _ = select_indices(cell, data, impl, scorer)
    return indices, arch


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Package versions and the git commit, recorded in every result."""
    out: dict[str, str | None] = {"corebench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "pyautoattack", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["git_commit"] = git_commit(Path(__file__).resolve().parents[1])
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


