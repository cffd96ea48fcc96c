"""Issue 23, defects 1 and 2: relative roots are confined against the right path, once.

`files.inside` is the one confinement rule (records, indices, claims, locks, cache files);
a relative `--results` (`../runs/results`, `.`, `""`) is resolved against the working
directory exactly once, so a finished record under it is read back as done.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corebench.cli import main
from corebench.core.errors import PathError
from corebench.core.files import confined, inside
from corebench.store.claims import claim_path, lock_path, try_claim
from corebench.store.record import parse_record
from corebench.store.results import (
    DONE,
    path_matches_key,
    record_state,
    scan,
    write_indices,
    write_record,
)

from helpers import write_fast_grid
from records import example_record, relpath


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_relative_root_is_joined_once(workdir):
    root = Path("../runs/results")
    rec = example_record(grid="g")
    path = root / relpath(rec)
    assert inside(root, path) == path
    assert confined(root, relpath(rec)) == path
    write_record(path, rec, root=root)
    write_indices(path.with_name("seed0.indices.npy"), [1, 2], root=root)
    assert (workdir.parent / "runs/results" / relpath(rec)).is_file()
    with pytest.raises(PathError, match="outside"):
        inside(root, Path("../runs/elsewhere.json"))


def test_a_symlink_under_a_relative_root_is_refused_for_records_and_claims(workdir):
    root = Path("../runs/results")
    (workdir.parent / "victim").mkdir()
    root.mkdir(parents=True)
    (root / "g").symlink_to(workdir.parent / "victim")
    rec = example_record(grid="g")
    path = root / relpath(rec)
    with pytest.raises(PathError, match="outside"):
        write_record(path, rec, root=root)
    with pytest.raises(PathError, match="outside"):
        try_claim(path, root=root)
    assert list((workdir.parent / "victim").iterdir()) == []


def test_claims_check_their_lock_and_claim_files_inside_an_absolute_root(tmp_path):
    root, victim = tmp_path / "results", tmp_path / "victim"
    victim.mkdir()
    root.mkdir()
    (root / "cell").symlink_to(victim)
    record = root / "cell" / "seed0.json"
    with pytest.raises(PathError, match="outside"):
        try_claim(record, root=root)
    assert not lock_path(victim / "seed0.json").exists() and not claim_path(victim / "seed0.json").exists()
    ok = root / "a" / "seed0.json"
    outcome, mine = try_claim(ok, root=root)
    assert outcome.state == "claimed" and mine is not None and claim_path(ok).is_file()


@pytest.mark.parametrize("spelling", [".", ""])
def test_results_dot_sees_its_records(tmp_path, monkeypatch, spelling):
    rec = example_record(grid="g")
    write_record(tmp_path / relpath(rec), rec)
    monkeypatch.chdir(tmp_path)
    path = Path(spelling) / relpath(rec)
    assert path_matches_key(path, parse_record(json.dumps(rec)))
    assert record_state(path) == DONE
    records, problems = scan(Path(spelling))
    assert len(records) == 1 and problems == []


def test_path_matches_key_compares_whole_parts():
    raw = example_record(grid="g")
    rec = parse_record(json.dumps(raw))
    assert path_matches_key(Path("/x") / relpath(raw), rec)
    assert not path_matches_key(Path("/x/xg") / Path(*relpath(raw).parts[1:]), rec)


def test_run_with_relative_results_and_cache_then_rerun_skips(workdir, capsys):
    """`--results ../runs/results --cache ../cache/x` runs, and the second run skips every cell."""
    grid = write_fast_grid(workdir.parent, methods=["random"], full_data_reference=False,
                           evaluation={"n_examples": 16, "pgd_steps": 1, "autoattack": {"enabled": False}})
    args = ["run", str(grid), "--results", "../runs/results", "--cache", "../cache/x", "--no-progress"]
    assert main(args) == 0
    (record,) = (workdir.parent / "runs/results").rglob("seed0.json")
    before = record.read_bytes()
    assert json.loads(before)["status"] == "ok"
    assert main(args) == 0
    assert record.read_bytes() == before


def test_leaderboard_with_relative_results_and_out(workdir, capsys):
    rec = example_record(grid="g")
    write_record(workdir.parent / "runs/results" / relpath(rec), rec)
    assert main(["leaderboard", "../runs/results", "--out", "../boards/x"]) == 0
    assert (workdir.parent / "boards/x/g").is_dir() and "1 finished cells" in capsys.readouterr().out
