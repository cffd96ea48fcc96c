"""Cluster execution: a grid as a Slurm array job through submitit (extra `corebench[slurm]`).

Stage 1 is one job that makes every scoring signal (`runner.run_grid_file`, scoring only);
stage 2 is an array of N shards that depends on it, each running its shard k of N. Records are atomic
and finished cells are skipped, so a pre-empted or failed task is simply resubmitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corebench.errors import BenchError
from corebench.runner import run_grid_file


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
    scoring = executor.submit(run_grid_file, grid, results, cache_dir, (0, 1), True)
    executor.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{scoring.job_id}"})
    with executor.batch():
        shards = [executor.submit(run_grid_file, grid, results, cache_dir, (k, n_jobs), False) for k in range(n_jobs)]
    return [scoring.job_id] + [j.job_id for j in shards]
