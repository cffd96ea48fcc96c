"""`corebench plan`'s estimate against the measured time of the same cells (issue 20, item 7).

A grid is sized from `plan` before it runs, so the estimate must hold within ±30 % (the target):
here on the quickstart's own settings (digits, its architecture, scoring, training, TRADES and
AutoAttack), cut to one seed and three methods so that it runs in about two minutes: random
and EasyCore (its 3 averaged scoring runs) at both fractions under standard training, at 10 %
under TRADES, and the full-data reference of each regime (8 cells). `plan` probes the machine
and estimates from an empty results folder (its priors, no records); then the same cells run in
one process, and their wall time is measured. Both in the same run, on the same load.

    python benchmarks/bench_plan.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml

from corebench.cells.grid import parse_grid
from corebench.drivers.plan import make_plan
from corebench.drivers.runner import run_grid

REPO = Path(__file__).resolve().parents[1]
BAND = (0.7, 1.3)  # estimate / measured


def grid() -> dict:
    """The quickstart grid, one seed, random and EasyCore (its settings otherwise unchanged)."""
    spec = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    return {**spec, "name": "plan_bench", "seeds": [0], "methods": ["random", {"name": "easycore", "n_runs": 3}]}


def measured_parts(results: Path) -> dict[str, float]:
    """Seconds the records say their parts took (each scoring run counted once)."""
    from corebench.store.results import scan

    runs, parts = {}, {"training": 0.0, "evaluation": 0.0}
    for stored in scan(results)[0]:
        record = stored.record
        parts["training"] += record.timings.get("train_s") or 0.0
        parts["evaluation"] += record.timings.get("eval_s") or 0.0
        runs |= {run.key: run.seconds for run in (record.cost.scoring_runs if record.cost else [])}
    return {**parts, "scoring": sum(runs.values())}


def main() -> dict:
    spec = parse_grid(grid())
    with tempfile.TemporaryDirectory(prefix="corebench-bench-plan-") as tmp:
        results, cache = Path(tmp) / "results", Path(tmp) / "cache"
        start = time.perf_counter()
        plan = make_plan(spec, results, cache, devices=["cpu"])
        probe_s = time.perf_counter() - start
        (est,) = plan.estimates
        start = time.perf_counter()
        run_grid(spec, results, cache_dir=cache, workers=1, progress=False)
        measured = time.perf_counter() - start
        parts = measured_parts(results)
    ratio = est.total_s / measured
    ok = BAND[0] <= ratio <= BAND[1]
    print(f"{plan.cells} cells of the quickstart's settings (one seed, random and EasyCore, full data)")
    print(f"plan's estimate: {est.total_s:.0f} s (scoring {est.scoring_s:.0f} s, training {est.training_s:.0f} s, "
          f"evaluation {est.evaluation_s:.0f} s; probing took {probe_s:.1f} s)")
    print(f"measured: {measured:.0f} s of wall time in one process (the records' own: scoring {parts['scoring']:.0f} s, "
          f"training {parts['training']:.0f} s, evaluation {parts['evaluation']:.0f} s)")
    print(f"estimate / measured = {ratio:.2f} (target {BAND[0]}-{BAND[1]}): {'OK' if ok else 'MISSED'}")
    return {"ok": ok, "ratio": ratio, "estimate_s": est.total_s, "measured_s": measured}


if __name__ == "__main__":
    main()
