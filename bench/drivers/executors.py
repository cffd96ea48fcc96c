"""A grid on Slurm: job arrays through submitit (the extra `corebench[slurm]`).

`submit_grid` submits the cells that have no finished record:
- one array of scoring tasks, one per scoring run the cells need that the cache does not hold;
- the cells, one array task each, grouped by the scoring runs they read: a group's array
  depends on exactly those scoring tasks with `afterok` (and `kill-on-invalid-dep`, so a
  failed scoring run cancels its cells instead of leaving them pending for ever); cells that
  read no scoring run, or only cached ones, start at once.

Every task gets the grid's `slurm:` resources (`SlurmConfig`). A cell task claims its cell in
the shared results folder (`corebench.store.claims`), so a cell is never run twice, and trains with
per-epoch checkpoints beside its record. On preemption or a time limit Slurm sends USR2 ahead of
the kill; submitit calls the task's `checkpoint`, which gives the claim back and resubmits the
same task; the requeued task resumes from the last per-epoch checkpoint. A plain
`scontrol requeue` (no signal to the job) resumes the same way: the requeued task finds the
checkpoint on disk and the claim of its killed predecessor, whose process is gone.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from corebench.compute.allocator import keep_freed_memory
from corebench.core.errors import invalid
from corebench.core.spec import FULL_DATA, Cell, GridSpec, SlurmConfig

log = logging.getLogger(__name__)

MAX_ARRAY = 1000  # tasks per array: Slurm's default MaxArraySize (1001) allows indices 0..1000
MAX_REQUEUES = 50  # submitit's budget of time-limit requeues per task; cells resume, so be generous
SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: time to leave the current step


def require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise invalid("executor", "slurm", "the slurm executor with submitit installed "
                      "(pip install 'corebench[slurm]'), or the local executor") from None
    if shutil.which("sbatch") is None:
        raise invalid("executor", "slurm", "the slurm executor on a Slurm login node (sbatch is not on PATH "
                      "here), or the local executor")
    return submitit


def slurm_parameters(cfg: SlurmConfig, threads: int = 1) -> dict[str, Any]:
    """The grid's `slurm:` settings as submitit parameters (CPUs: the grid's `threads` unless set)."""
    params: dict[str, Any] = {
        "timeout_min": cfg.time, "cpus_per_task": cfg.cpus or threads, "slurm_signal_delay_s": SIGNAL_DELAY_S,
        "stderr_to_stdout": False, "nodes": 1, "tasks_per_node": 1,
    }  # fmt: skip
    if cfg.gpus:
        params["gpus_per_node"] = cfg.gpus
    optional = {"slurm_partition": cfg.partition, "slurm_account": cfg.account, "slurm_qos": cfg.qos,
                "slurm_constraint": cfg.constraint, "slurm_mem": cfg.mem,
                "slurm_array_parallelism": cfg.array_parallelism}  # fmt: skip
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _log_to_stderr() -> None:
    """The task's log (submitit's `*_log.err`) shows corebench's progress: claims, resumes, failures."""
    ours = logging.getLogger("corebench")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)


@dataclass
class ScoringTask:
    """One scoring run: (dataset, scoring arch, run seed) with the signals its cells read."""

    spec: GridSpec
    key: tuple
    signals: frozenset[str]
    cache_dir: str | None
    epochs: int | None = None  # epochs the run trains (None: the whole schedule)

    def __call__(self) -> str:
        from corebench.compute.datasets import load_dataset
        from corebench.compute.optim import resolve_device, torch_threads
        from corebench.drivers.cell import default_cache_dir
        from corebench.drivers.scoring_runs import ScoringCache

        _log_to_stderr()
        keep_freed_memory()
        cache = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        device, threads = resolve_device(self.spec.device), self.spec.threads
        scorer = ScoringCache(self.spec.scoring, cache / "scoring", device, progress=False, threads=threads)
        scorer.needs[self.key] = set(self.signals)
        if self.epochs is not None:
            scorer.epochs[self.key] = self.epochs
        with torch_threads(threads):  # the cache key holds the grid's threads: make it with them
            scorer.make(self.key, load_dataset(self.key[0]))
        return "ok"

    def checkpoint(self) -> Any:  # a scoring run has no checkpoints: start it again
        return require_submitit().helpers.DelayedSubmission(self)


@dataclass
class CellTask:
    """One cell: claim it, train (resuming from its last per-epoch checkpoint), attack, record."""

    spec: GridSpec
    cell: Cell
    results_dir: str
    cache_dir: str | None
    epochs: int | None = None  # epochs the run trains (None: the whole schedule)

    def __call__(self) -> str:
        from corebench.drivers.runner import run_grid

        _log_to_stderr()
        keep_freed_memory()
        summary = run_grid(self.spec, self.results_dir, cache_dir=self.cache_dir, cells=[self.cell], progress=False)
        if summary.failed:
            return f"failed: {summary.failures[0][1]}"
        return "busy" if summary.busy else "ok" if summary.finished else "done"

    def checkpoint(self) -> Any:
        """Preempted or out of time (USR2): the state to resume from is the last per-epoch
        checkpoint on disk; leaving `__call__` gives the claim back. Resubmit the same task."""
        log.warning("cell %s: preempted; it resumes from its last checkpoint", self.cell.relpath(self.spec.name))
        return require_submitit().helpers.DelayedSubmission(self)


@dataclass
class Submission:
    """What `submit_grid` submitted."""

    scoring_jobs: list[str] = field(default_factory=list)
    cell_jobs: dict[str, str] = field(default_factory=dict)  # record path (relative) -> job id
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # cell job id -> scoring job ids
    cached_runs: int = 0  # scoring runs found in the cache, reused
    done: int = 0  # cells with a finished record, not submitted
    arrays: list[str] = field(default_factory=list)  # array job ids, in submission order


def submit_grid(spec: GridSpec, results_dir: str | Path, *, cache_dir: str | Path | None = None,
                log_dir: str | Path = "slurm_logs", executor: Any = None) -> Submission:
    """Submit the grid's unfinished cells and the scoring runs they need (see the module doc)."""
    from corebench.core.errors import MethodError
    from corebench.drivers.cell import default_cache_dir
    from corebench.drivers.work import plan_work
    from corebench.methods.base import declared_signals

    results = str(Path(results_dir).resolve())
    cache = str(Path(cache_dir).resolve()) if cache_dir is not None else None
    if executor is None:  # a handed-in executor (tests, another scheduler) needs neither submitit nor sbatch
        executor = require_submitit().AutoExecutor(folder=str(Path(log_dir).resolve() / "%j"), cluster="slurm",
                                         slurm_max_num_timeout=MAX_REQUEUES)  # fmt: skip
    base = slurm_parameters(spec.slurm, spec.threads)
    out = Submission()

    # data, models and attacks are checked before submitting
    work = plan_work(spec, Path(results), cache=Path(cache) if cache else default_cache_dir())
    todo, methods, scorer = [s.cell for s in work.todo], work.methods, work.scorer
    out.done = len(work.states) - len(todo)
    missing = work.missing_runs()
    out.cached_runs = len(work.runs()) - len(missing)

    job_of: dict[tuple, str] = {}
    for chunk in _chunks(missing):
        executor.update_parameters(**base, name=f"corebench-{spec.name}-scoring", slurm_additional_parameters={})
        with executor.batch():
            jobs = [executor.submit(ScoringTask(spec, key, frozenset(scorer.needs[key]), cache, scorer.epochs.get(key))) for key in chunk]
        job_of.update({key: job.job_id for key, job in zip(chunk, jobs, strict=True)})
        out.scoring_jobs += [job.job_id for job in jobs]
        out.arrays.append(_array_of(jobs[0].job_id))

    def needs(cell: Cell) -> tuple[str, ...]:
        if cell.method.name == FULL_DATA:
            return ()
        try:
            if not declared_signals(methods[cell.method]):
                return ()
        except MethodError:  # an unknown signal: the cell fails on its own, waiting for nothing
            return ()
        return tuple(sorted({job_of[k] for k in scorer.keys(cell, methods[cell.method]) if k in job_of}))

    for deps, group in groupby(sorted(todo, key=needs), key=needs):
        extra = {"dependency": "afterok:" + ":".join(deps), "kill-on-invalid-dep": "yes"} if deps else {}
        for chunk in _chunks(list(group)):
            executor.update_parameters(**base, name=f"corebench-{spec.name}-cells", slurm_additional_parameters=extra)
            with executor.batch():
                jobs = [executor.submit(CellTask(spec, cell, results, cache)) for cell in chunk]
            for cell, job in zip(chunk, jobs, strict=True):
                out.cell_jobs[cell.relpath(spec.name).as_posix()] = job.job_id
                out.dependencies[job.job_id] = list(deps)
            out.arrays.append(_array_of(jobs[0].job_id))
    return out


def _chunks(items: list) -> list[list]:
    return [items[i : i + MAX_ARRAY] for i in range(0, len(items), MAX_ARRAY)]


def _array_of(job_id: str) -> str:
    return job_id.split("_")[0]


def with_overrides(cfg: SlurmConfig, overrides: dict[str, Any]) -> SlurmConfig:
    """The grid's `slurm:` block with `--slurm KEY=VALUE` settings on top (checked as the block is)."""
    from corebench.core.checked import build

    return build(SlurmConfig, {**dataclasses.asdict(cfg), **overrides}, "slurm_overrides")
