"""Paths are confined: nothing the suite writes or deletes lands outside its folder.

One test per traversal the hostile probe found or could try: an absolute path and `..` in the
boards' manifest, a record whose grid name is `..`, dataset / architecture / method ids of `..`,
and symlinks leading out of the results, cache and leaderboard folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corebench.boards.leaderboard import MANIFEST, generate_leaderboards
from corebench.cli import main
from corebench.core.errors import PathError
from corebench.core.files import confined, orphans_in, sweep_orphans, write_atomic
from corebench.core.spec import Cell, record_relpath, slug
from corebench.methods import facts
from corebench.store.results import write_record

from helpers import write_fast_grid
from records import example_record, relpath


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def board_dirs(tmp_path):
    """A results folder with one record, an empty --out, and a 'victim' folder beside them."""
    results, out, victim = tmp_path / "results", tmp_path / "out", tmp_path / "victim"
    rec = example_record(grid="g")
    write_record(results / relpath(rec), rec)
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return results, out, victim


def test_confined_refuses_absolute_parent_and_symlinked_paths(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert confined(root, "a/b.json") == root / "a" / "b.json"
    for bad in ("/etc/passwd", "../x", "a/../../x", str(tmp_path / "elsewhere")):
        with pytest.raises(PathError, match="outside"):
            confined(root, bad)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(PathError, match="outside"):
        confined(root, "link/x.json")
    with pytest.raises(PathError):
        write_atomic(root / "link" / "x.json", lambda f: f.write(b"x"), root=root)
    assert not (tmp_path / "x.json").exists()


def test_an_absolute_path_in_the_manifest_deletes_nothing(board_dirs):
    results, out, victim = board_dirs
    generate_leaderboards(results, out, facts)
    with (out / MANIFEST).open("a") as f:
        f.write(f"{victim / 'precious.txt'}\n")
    generate_leaderboards(results, out, facts)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert str(victim) not in (out / MANIFEST).read_text()


def test_dotdot_in_the_manifest_deletes_nothing(board_dirs):
    results, out, victim = board_dirs
    generate_leaderboards(results, out, facts)
    with (out / MANIFEST).open("a") as f:
        f.write("../victim/precious.txt\ng/../../victim/precious.txt\n")
    generate_leaderboards(results, out, facts)
    assert (victim / "precious.txt").read_text() == "keep me"


def test_a_manifest_line_through_a_symlink_deletes_nothing(board_dirs):
    results, out, victim = board_dirs
    generate_leaderboards(results, out, facts)
    (out / "escape").symlink_to(victim)
    (out / "file-link.md").symlink_to(victim / "precious.txt")
    with (out / MANIFEST).open("a") as f:
        f.write("escape/precious.txt\nfile-link.md\n")
    generate_leaderboards(results, out, facts)
    assert (victim / "precious.txt").read_text() == "keep me"


def test_a_record_whose_grid_name_is_dotdot_writes_boards_inside_out(tmp_path, board_dirs):
    results, out, victim = board_dirs
    rec = example_record(grid="..")
    assert slug("..") == "__" and relpath(rec).parts[0] == "__"
    write_record(results / relpath(rec), rec)
    before = _tree(tmp_path)
    report = generate_leaderboards(results, out, facts)
    assert all(p.resolve().is_relative_to(out.resolve()) for p in report.files)
    new = set(_tree(tmp_path)) - set(before)
    assert new and all(p.startswith("out/") for p in new), sorted(new)


def test_a_board_folder_symlinked_out_of_out_is_refused(board_dirs, capsys):
    results, out, victim = board_dirs
    out.mkdir()
    (out / "g").symlink_to(victim)
    assert main(["leaderboard", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside" in err
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("field", ["dataset", "arch", "method_label", "regime"])
def test_record_paths_stay_inside_for_any_label(field):
    key = {"dataset": "digits", "arch": "resnet18", "regime": "standard", "method_label": "random",
           "fraction": 0.3, "seed": 0}  # fmt: skip
    for evil in ("..", "../..", "/etc", "a/../../b", ".", "~", "\\..\\x", "..\x00"):
        rel = record_relpath("..", {**key, field: evil})
        assert not rel.is_absolute() and ".." not in rel.parts and "." not in rel.parts, rel
        assert len(rel.parts) == 7


def test_dotdot_ids_put_records_inside_results(tmp_path):
    """Dataset, architecture and method ids of `..` end to end: every file lands inside --results."""
    grid = write_fast_grid(
        tmp_path, datasets=[{"name": "digits", "id": ".."}],
        architectures=[{"name": "resnet10t", "id": "../..", "kwargs": {"channels": [4, 8, 16, 32], "stem_width": 4}}],
        methods=[{"name": "random", "id": ".."}], full_data_reference=False,
        evaluation={"n_examples": 16, "pgd_steps": 1, "autoattack": {"enabled": False}},
    )  # fmt: skip
    results = tmp_path / "results"
    before = set(_tree(tmp_path))
    assert main(["run", str(grid), "--results", str(results), "--cache", str(tmp_path / "cache"), "--no-progress"]) == 0
    new = set(_tree(tmp_path)) - before
    assert all(p.startswith(("results/", "cache/")) for p in new), sorted(new)
    (record,) = results.rglob("seed0.json")
    assert record.relative_to(results).as_posix() == "fast/__/_____/standard/__/f0.3/seed0.json"
    assert json.loads(record.read_text())["cell"]["dataset"] == ".."
    assert main(["status", str(results), "--grid", str(grid)]) == 0


@pytest.mark.parametrize("link", ["results", "cache-scoring", "cache-checkpoints"])
def test_a_symlink_out_of_results_or_cache_is_refused_before_compute(tmp_path, capsys, link):
    grid = write_fast_grid(tmp_path, methods=["random"], full_data_reference=False)
    results, cache, victim = tmp_path / "results", tmp_path / "cache", tmp_path / "victim"
    victim.mkdir()
    if link == "results":
        results.mkdir()
        (results / "fast").symlink_to(victim)
    else:
        cache.mkdir()
        (cache / link.split("-")[1]).symlink_to(victim)
    code = main(["run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "outside" in err, err
    assert list(victim.iterdir()) == []


def test_orphaned_temp_files_of_dead_processes_are_swept(tmp_path):
    target = tmp_path / "seed0.json"
    from corebench.core.files import _HOST as host
    dead = tmp_path / f".seed0.json.{host}.999999999.abcd1234.tmp"  # no such pid
    live = tmp_path / f".seed0.json.{host}.{os.getpid()}.abcd1234.tmp"
    other_host = tmp_path / ".seed0.json.elsewhere.1.abcd1234.tmp"
    for p in (dead, live, other_host):
        p.write_text("partial")
    assert sweep_orphans(target) == [dead]
    write_atomic(target, lambda f: f.write(b"{}"))
    assert sorted(orphans_in(tmp_path)) == sorted([live, other_host])


def test_cells_never_share_or_escape_a_path():
    from corebench.core.spec import ArchSpec, DatasetSpec, MethodSpec

    cell = Cell(DatasetSpec("digits", id=".."), ArchSpec("resnet18", id="/abs"), ArchSpec("resnet18", id="/abs"),
                "standard", MethodSpec("random", id="../../x"), 0.3, 0)  # fmt: skip
    rel = cell.relpath("..")
    assert ".." not in rel.parts and not rel.is_absolute()


def test_a_folder_where_a_record_goes_is_refused_before_compute(tmp_path, capsys):
    grid = write_fast_grid(tmp_path, methods=["random"], full_data_reference=False)
    where = tmp_path / "results" / "fast/digits/r10w4/standard/random/f0.3/seed0.json"
    where.mkdir(parents=True)
    code = main(["run", str(grid), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is not a file" in err
    assert not (tmp_path / "c" / "scoring").exists() or not list((tmp_path / "c" / "scoring").iterdir())
