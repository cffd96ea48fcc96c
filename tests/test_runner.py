"""The runner's paths that only end-to-end tests reached: a grid's own plan of work, options that
need the dataset, and committed records counted as done under their committed grids."""

from pathlib import Path

import pytest

from corebench.cells.grid import load_grid, parse_grid
from corebench.drivers.runner import run_grid
from corebench.drivers.smoke import smoke_grid
from corebench.drivers.work import plan_work
from corebench.store.results import DONE

from helpers import FAST_GRID

ROOT = Path(__file__).resolve().parents[1]


def test_ccs_without_a_cutoff_runs_on_a_dataset_with_a_beta_table(tmp_path):
    """CCS takes β from its table for cifar10; the runner must resolve its options with the
    dataset on every path (it once lost the dataset when claiming a cell, and the whole grid
    stopped before its first record)."""
    spec = smoke_grid(parse_grid({**FAST_GRID, "name": "ccs_beta", "datasets": ["cifar10"],
                                  "methods": ["ccs"], "fractions": [0.1]}))
    summary = run_grid(spec, tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    assert (summary.failed, summary.finished, summary.failures) == (0, 2, [])
    states = plan_work(spec, tmp_path / "results").states
    assert [s.state for s in states] == [DONE, DONE]
    (ccs,) = [s for s in states if s.cell.method.name == "ccs"]
    assert ccs.options["hard_cutoff"] is not None and ccs.options_error is None


def test_a_second_run_finds_every_cell_done(tmp_path):
    spec = parse_grid(FAST_GRID)
    run_grid(spec, tmp_path, cache_dir=tmp_path / "cache", progress=False)
    work = plan_work(spec, tmp_path)
    assert work.todo == [] and len(work.done) == len(spec.cells()) and work.missing_runs() == []


COMMITTED = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if (ROOT / "results" / p.stem).is_dir()]


@pytest.mark.parametrize("grid", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_every_committed_record_is_done_under_its_committed_grid(grid):
    """A contributor adding one method to a committed grid reruns only that method's cells."""
    spec = load_grid(grid)
    absent = [str(where) for ds in spec.datasets for where in (ds.path, ds.root)
              if where is not None and not Path(where).exists()]  # fmt: skip
    if absent:  # the grid's real data is not on this machine (a clone outside the shared folder's reach)
        pytest.skip(f"{grid.name}: data absent ({', '.join(absent)})")
    states = plan_work(spec, ROOT / "results").states
    records = sorted((ROOT / "results" / spec.name).rglob("*.json"))
    by_path = {s.path.resolve(): s.state for s in states}
    not_done = [str(r.relative_to(ROOT)) for r in records if by_path.get(r.resolve()) != DONE]
    assert not_done == [], f"{len(not_done)} of {len(records)} committed records not done: {not_done[:3]}"
