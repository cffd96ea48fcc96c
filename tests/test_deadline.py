"""The wall-clock guard (`corebench run --deadline / --time-limit`, `corebench.drivers.guard`): no cell
starts that would not end in time, running cells finish, the rest are deferred and a later run
picks them up. No test here depends on how fast the machine is: estimates are given."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from corebench.cells.grid import load_grid
from corebench.cli import main
from corebench.core.errors import ConfigError
from corebench.drivers.guard import Deadline, deadline_from
from corebench.drivers.runner import run_grid

from helpers import write_fast_grid


def test_expected_seconds_are_estimates_scaled_by_what_finished_cells_took():
    guard = Deadline(at=1000.0, estimates={"a": 5.0, "b": 4.0, "c": 50.0})
    assert guard.expected("b") == 4.0  # nothing observed yet: the estimate itself
    guard.observe("a", 10.0)  # took twice its estimate
    assert guard.expected("b") == 8.0
    assert guard.fits("b", now=992.0) and not guard.fits("b", now=992.5)
    assert guard.expected("unknown") == 10.0  # no estimate: the longest cell so far
    assert Deadline(at=0.0).fits("x", now=-1.0)  # nothing known, nothing refused before the deadline


def test_deadline_and_time_limit_are_parsed_against_now():
    now = dt.datetime(2026, 12, 5, 7, 0, 0).timestamp()
    assert deadline_from(None, None, now) is None
    assert deadline_from(None, "540", now) == now + 540
    assert deadline_from("08:35", None, now) == dt.datetime(2026, 12, 5, 8, 35).timestamp()
    assert deadline_from("06:00", None, now) == dt.datetime(2026, 12, 6, 6, 0).timestamp()  # passed: tomorrow


@pytest.mark.parametrize("deadline, limit, field", [
    ("25:00", None, "deadline"), ("8h", None, "deadline"), (None, "soon", "time_limit"),
    (None, "-5", "time_limit"), (None, "nan", "time_limit"), ("08:00", "60", "deadline"),
])
def test_bad_deadlines_are_one_line_errors_naming_the_option(deadline, limit, field):
    """The library names its parameter; the CLI prints the flag (tests/test_cli.py)."""
    with pytest.raises(ConfigError, match=f"^{field}: .* is not allowed; allowed: "):
        deadline_from(deadline, limit)


@pytest.mark.parametrize("workers", [1, 2])
def test_cells_that_would_not_end_in_time_are_deferred_and_a_rerun_finishes_them(tmp_path, workers):
    spec = load_grid(write_fast_grid(tmp_path, seeds=[0, 1], methods=["random"]))

    def estimator(work, device):  # seed 1's cells would take a day
        return {s.cell_id: 0.0 if s.cell.seed == 0 else 86400.0 for s in work.todo}

    results, cache = tmp_path / "results", tmp_path / "cache"
    summary = run_grid(spec, results, cache_dir=cache, progress=False, deadline=time.time() + 3600,
                       estimator=estimator, workers=workers)  # with 2, each worker process holds the guard
    assert summary.finished == 2 and summary.failed == 0
    assert len(summary.deferred) == 2
    assert not any(Path(p).exists() for p in summary.deferred)  # never started: no record, no claim left
    written = {json.loads(p.read_text())["cell"]["seed"] for p in results.rglob("*.json")}
    assert written == {0}
    again = run_grid(spec, results, cache_dir=cache, progress=False)  # no deadline: the deferred ones run
    assert (again.skipped, again.finished, again.deferred) == (2, 2, [])


def test_with_a_deadline_cells_run_seed_by_seed(tmp_path):
    spec = load_grid(write_fast_grid(tmp_path, seeds=[0, 1], methods=["random"]))
    order = []

    def estimator(work, device):
        order.extend(s.cell.seed for s in work.todo)
        return {}

    run_grid(spec, tmp_path / "results", cache_dir=tmp_path / "cache", progress=False,
             deadline=time.time() + 3600, estimator=estimator)
    assert order == sorted(order) and len(order) == 4  # the grid's own order has seed innermost


def test_cli_time_limit_defers_and_says_so(tmp_path, capsys):
    grid = write_fast_grid(tmp_path, methods=["random"])
    code = main(["run", str(grid), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
                 "--no-progress", "--time-limit", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "0 finished" in out and "2 cells deferred" in out
    assert not list((tmp_path / "r").rglob("*.json"))


def test_cli_bad_time_limit_exits_2_in_one_line(tmp_path, capsys):
    grid = write_fast_grid(tmp_path)
    assert main(["run", str(grid), "--results", str(tmp_path / "r"), "--time-limit", "soon"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--time-limit: 'soon' is not allowed" in err
