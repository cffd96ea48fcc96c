"""Published scoring runs (`corebench publish-scoring`): CONTRIBUTING's "Add your method to a
committed board", followed step by step on digits, and what a published folder guarantees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corebench.cli import main
from corebench.selection.published import INDEX, Published
from corebench.store.cache_entry import read_arrays, read_meta, write_entry

from helpers import write_fast_grid

HARDEST = {"name": "easycore", "direction": "hardest", "id": "easycore_hardest"}


def _cli(*args: str) -> int:
    return main([*args])


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A maintainer's committed board: the grid run, its scoring runs published, the cache gone."""
    tmp = tmp_path_factory.mktemp("committed")
    (tmp / "configs").mkdir()
    grid = write_fast_grid(tmp / "configs")
    results, cache = tmp / "results", tmp / "maintainer-cache"
    assert _cli("run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress") == 0
    assert _cli("publish-scoring", str(grid), "--results", str(results), "--cache", str(cache)) == 0
    return tmp, grid, results


def test_publish_writes_checksummed_runs_with_their_provenance(committed):
    _, _, results = committed
    folder = results / "fast" / "scoring"
    published = Published(folder)
    (run,) = published.runs.values()  # one scoring run: easycore's, seed 0 run 0 (random reads none)
    assert run.signals == ("input_grad_norm_eval",) and run.trained_epochs == 2
    assert run.made_by["grid"] == "fast" and run.made_by["data"] and "path" not in run.made_by["dataset"]
    assert (folder / run.file).stat().st_size == run.bytes < 10 * 2**20
    assert not list(folder.glob("*.json"))  # the record store reads every *.json: the index is .jsonl


def test_adding_one_method_trains_only_its_cells_from_the_published_runs(committed, tmp_path, capsys):
    """CONTRIBUTING, "Add your method to a committed board", on digits: a fresh clone (no cache)
    adds one method entry to the committed grid; plan says only its cell runs and no scoring run
    is made; the run trains that cell alone, scored from the published run; one protocol."""
    tmp, grid, results = committed
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*.json")}
    text = grid.read_text().replace("- random\n", "- random\n- direction: hardest\n  id: easycore_hardest\n  name: easycore\n")
    grid.write_text(text)
    fresh_cache = tmp_path / "contributor-cache"
    capsys.readouterr()
    assert _cli("plan", str(grid), "--results", str(results), "--cache", str(fresh_cache), "--no-probe") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "1 cells to run, 3 done; scoring runs: 1 published, 0 cached, 0 to make"
    assert _cli("run", str(grid), "--results", str(results), "--cache", str(fresh_cache), "--no-progress") == 0
    assert "4 cells, 3 already done, 1 finished, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the committed records untouched
    assert not list((fresh_cache / "scoring").glob("*.npz"))  # no scoring run was made
    new = json.loads(next(results.rglob("easycore_hardest/f0.3/seed0.json")).read_text())
    (run,) = Published(results / "fast" / "scoring").runs.values()
    assert new["status"] == "ok" and [r["key"] for r in new["cost"]["scoring_runs"]] == [run.key]
    assert _cli("leaderboard", str(results), "--out", str(tmp_path / "boards")) == 0
    boards = [p.read_text() for p in (tmp_path / "boards").rglob("*.md") if p.name != "README.md"]
    assert any("easycore_hardest" in b for b in boards)
    assert not any("different settings" in b for b in boards)


def test_a_signal_the_published_runs_lack_is_named_in_plan(committed, tmp_path, capsys):
    _, grid, results = committed
    other = write_fast_grid(tmp_path, methods=["easycore", "random", "forgetting"])
    capsys.readouterr()
    assert _cli("plan", str(other), "--results", str(results), "--cache", str(tmp_path / "c"), "--no-probe") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("scoring runs: 0 published, 0 cached, 1 to make")
    assert ": to make (correct)" in out  # only what the published run lacks is made


def test_a_damaged_published_run_is_one_line_not_a_silent_remake(committed, tmp_path, capsys):
    _, grid, results = committed
    copy = tmp_path / "results"
    copy.mkdir()
    folder = copy / "fast" / "scoring"
    folder.mkdir(parents=True)
    for p in (results / "fast" / "scoring").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    npz = next(folder.glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    one = write_fast_grid(tmp_path, methods=["easycore"], full_data_reference=False)
    capsys.readouterr()
    code = _cli("run", str(one), "--results", str(copy), "--cache", str(tmp_path / "c"), "--no-progress")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "fails its checksum" in err and "git checkout" in err
    (folder / INDEX).write_text("not json\n")
    assert _cli("plan", str(one), "--results", str(copy), "--no-probe") == 2
    assert f"{INDEX}: line 1 is not a published scoring run" in capsys.readouterr().err


def test_publish_names_a_run_missing_from_the_cache(tmp_path, capsys):
    grid = write_fast_grid(tmp_path)
    code = _cli("publish-scoring", str(grid), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "empty"))
    err = capsys.readouterr().err
    assert code == 2 and "is neither published nor in the cache" in err and "--scoring-only" in err


def test_publish_keeps_the_runs_already_published_when_their_cache_is_gone(committed, tmp_path, capsys):
    """A committed grid extended by a seed on another machine: the first seed's run is only
    published (the maintainer's cache is gone); publishing keeps it byte for byte beside the new one."""
    _, _, results = committed
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    folder = copy / "fast" / "scoring"
    first = {p.name: p.read_bytes() for p in folder.glob("*.npz")}
    grid = write_fast_grid(tmp_path, seeds=[0, 1])
    cache = tmp_path / "second-machine"
    assert _cli("run", str(grid), "--results", str(copy), "--cache", str(cache), "--no-progress") == 0
    capsys.readouterr()
    assert _cli("publish-scoring", str(grid), "--results", str(copy), "--cache", str(cache)) == 0
    assert "2 scoring runs published" in capsys.readouterr().out
    assert len(Published(folder).runs) == 2 and len(first) == 1
    assert all((folder / name).read_bytes() == blob for name, blob in first.items())


def test_publish_refuses_a_run_that_is_not_the_one_its_records_read(tmp_path, capsys):
    """A scoring run remade on other CPU kernels differs from the one a record was selected
    from: publishing it would score a new method from other runs than the board's rows."""
    grid = write_fast_grid(tmp_path, methods=["easycore"], full_data_reference=False)
    results, cache = tmp_path / "r", tmp_path / "c"
    assert _cli("run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress") == 0
    (npz,) = (cache / "scoring").glob("*.npz")
    remade = {k: v + 1e-3 if v.dtype.kind == "f" else v for k, v in read_arrays(npz).items()}
    write_entry(npz, remade, {k: v for k, v in read_meta(npz).items() if k != "checksum"}, root=cache)
    capsys.readouterr()
    code = _cli("publish-scoring", str(grid), "--results", str(results), "--cache", str(cache))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "differs from the one record" in err and "seed0.json" in err
    assert not (results / "fast" / "scoring").exists()


def test_publish_into_a_results_folder_named_relatively(tmp_path, monkeypatch):
    """`--results results`, as CONTRIBUTING writes it: the runs land in results/<grid>/scoring/,
    not in results/results/<grid>/scoring/ (the folder path was joined onto the root twice)."""
    monkeypatch.chdir(tmp_path)
    grid = write_fast_grid(tmp_path, methods=["easycore"], full_data_reference=False)
    assert _cli("run", str(grid), "--results", "results", "--cache", "cache", "--no-progress") == 0
    assert _cli("publish-scoring", str(grid), "--results", "results", "--cache", "cache") == 0
    assert len(Published(tmp_path / "results" / "fast" / "scoring").runs) == 1
    assert not (tmp_path / "results" / "results").exists()


def test_force_remakes_the_scoring_runs(tmp_path):
    grid = write_fast_grid(tmp_path, methods=["easycore"], full_data_reference=False)
    args = ["run", str(grid), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--no-progress"]
    assert _cli(*args) == 0
    (entry,) = (tmp_path / "c" / "scoring").glob("*.json")
    made = json.loads(entry.read_text())
    entry.write_text(json.dumps({**made, "seconds": -1.0}))  # a mark: gone once the run is made again
    assert _cli(*args, "--force") == 0
    assert json.loads(Path(entry).read_text())["seconds"] >= 0


def test_contributing_names_the_signals_the_split_boards_published_runs_hold():
    """CONTRIBUTING tells a contributor which signals the committed split board's runs hold (a
    method reading another one makes new runs): the sentence follows the published index."""
    repo = Path(__file__).resolve().parents[1]
    runs = Published(repo / "results" / "cifar10_cpu" / "scoring").runs.values()
    holding = {name: sum(name in run.signals for run in runs) for run in runs for name in run.signals}
    text = " ".join((repo / "CONTRIBUTING.md").read_text().split())
    assert f"`input_grad_norm_eval` (all {len(runs)} runs)" in text
    assert holding["input_grad_norm_eval"] == len(runs)
    assert f"`margin_probs` ({holding['margin_probs']}, one per seed)" in text
    assert set(holding) == {"input_grad_norm_eval", "margin_probs"}
