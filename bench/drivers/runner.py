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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from corebench.compute.allocator import keep_freed_memory
from corebench.compute.data import Dataset
from corebench.compute.datasets import load_dataset
from corebench.compute.kernels import in_portable_process, needs_portable_process
from corebench.compute.optim import resolve_device, torch_threads
from corebench.core.errors import GridStopped
from corebench.core.files import confined, writable_folder
from corebench.core.spec import (
    FULL_DATA,
    Cell,
    CpuKernels,
    GridSpec,
    slug,
)
from corebench.drivers.cell import CHECKPOINTS, checkpoint_for, default_cache_dir, run_cell
from corebench.drivers.guard import Deadline
from corebench.drivers.scoring_runs import ScoringCache, scoring_failed
from corebench.drivers.work import CellState, Work, plan_work
from corebench.methods import CoresetMethod, create_method
from corebench.store.claims import holding
from corebench.store.inputs import changed_inputs
from corebench.store.results import (
    DONE,
    read_record,
)

log = logging.getLogger(__name__)


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
    cpu_kernels: CpuKernels = "native",
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

    `cpu_kernels` "portable" on a CPU runs the whole grid in a fresh process on the portable
    kernels (`corebench.compute.kernels`: the same numbers on any x86-64 CPU, about 2× slower);
    each record's `device` says which kernels made it.
    """
    results_dir = writable_folder(results_dir, "results_dir")
    cache = writable_folder(Path(cache_dir) if cache_dir is not None else default_cache_dir(), "cache_dir")
    for sub in ("scoring", CHECKPOINTS):  # a link out of the cache fails now, not after compute
        confined(cache, sub)
    device = resolve_device(spec.device)
    if needs_portable_process(cpu_kernels, device):
        return in_portable_process(run_grid, spec, results_dir, cache_dir=cache, shard=shard, force=force,
                                   scoring_only=scoring_only, workers=workers, progress=progress, cells=cells,
                                   deadline=deadline, estimator=estimator, cpu_kernels=cpu_kernels)
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
    keep_freed_memory()
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


