"""`corebench run GRID --smoke` on every committed grid: a grid that would crash does so here,
including the paper grids whose real data is not on this machine (stand-in data)."""

from pathlib import Path

import pytest

from corebench.cells.grid import load_grid
from corebench.cli import main
from corebench.drivers.smoke import smoke_grid

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("grid", GRIDS, ids=[p.stem for p in GRIDS])
def test_every_committed_grid_passes_its_smoke_run(grid, tmp_path, capsys):
    code = main(["run", str(grid), "--smoke", "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    spec = smoke_grid(load_grid(grid))
    assert f"{len(spec.cells())} ran, 0 failed" in out
    records = list((tmp_path / "r").rglob("*.json"))
    assert len(records) == len(spec.cells())


def test_the_smoke_grid_keeps_every_kind_of_cell_and_cuts_the_rest():
    spec = load_grid(ROOT / "configs" / "paper_cifar10.yaml")
    smoke = smoke_grid(spec)
    kinds = lambda s: {(c.method.name, c.regime, c.arch.label) for c in s.cells()}  # noqa: E731
    assert kinds(smoke) == kinds(spec)
    assert {c.fraction for c in smoke.cells() if c.method.name != "full"} == {min(spec.fractions), max(spec.fractions)}
    assert smoke.seeds == spec.seeds[:1] and all(d.stand_in for d in smoke.datasets)
    assert all(m.params.get("n_runs", 1) == 1 for m in smoke.methods)
    assert smoke.evaluation.eps == (max(spec.evaluation.eps),) and smoke.evaluation.n_examples <= 8


@pytest.mark.parametrize("grid", GRIDS, ids=[p.stem for p in GRIDS])
def test_a_grid_s_shared_data_path_resolves_from_its_folder(grid):
    """Relative data paths are read from the grid file's folder: one written from the repository
    root instead points nowhere (the smoke run's stand-ins would not notice)."""
    shared = ROOT.parent / "shared" / "data"
    for ds in load_grid(grid).datasets:
        where = ds.path or ds.root
        if where and "shared/data" in where:
            if not shared.is_dir():
                pytest.skip("the shared data folder is not on this machine")
            assert Path(where).exists(), f"{grid.name}: {ds.name} at {where} (read from {grid.parent})"
