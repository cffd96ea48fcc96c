"""Cluster execution: a grid as a Slurm array job through submitit (extra `corebench[slurm]`).

Stage 1 is one job that makes every scoring signal (`run --scoring-only`); stage 2 is an
array of N shards that depends on it, each running `run --shard k/N`. Records are atomic
and finished cells are skipped, so a pre-empted or failed task is simply resubmitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corebench.errors import BenchError


def _shard_main(grid: str, results: str, cache: str | None, shard: str, scoring_only: bool) -> int:
    from corebench.cli import main

    argv = ["run", grid, "--results", results, "--shard", shard, "--no-progress"]
    if cache:
        argv += ["--cache", cache]
    if scoring_only:
        argv.append("--scoring-only")
    return main(argv)


def submit_slurm(grid: str, results: str, *, n_jobs: int, cache_dir: str | None = None,
                 slurm: dict[str, Any] | None = None, log_dir: str | Path = "slurm_logs") -> list[str]:
    """Submit the scoring stage and an array of `n_jobs` shards; return the job ids."""
    try:
        import submitit
    except ImportError:
        raise BenchError("--executor slurm: submitit is not installed; allowed: pip install 'corebench[slurm]'") from None
    if n_jobs < 1:
        raise BenchError(f"--jobs: {n_jobs!r} is not allowed; allowed: a positive integer")
    grid, results = str(Path(grid).resolve()), str(Path(results).resolve())
    executor = submitit.AutoExecutor(folder=str(log_dir))
    executor.update_parameters(**(slurm or {}))
    scoring = executor.submit(_shard_main, grid, results, cache_dir, "0/1", True)
    executor.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{scoring.job_id}"})
    with executor.batch():
        shards = [executor.submit(_shard_main, grid, results, cache_dir, f"{k}/{n_jobs}", False) for k in range(n_jobs)]
    return [scoring.job_id] + [j.job_id for j in shards]
