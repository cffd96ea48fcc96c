"""Crash tests: a grid killed with SIGKILL at five points, rerun, loses and repeats nothing.

Each run is a child process (forked from the test, so it skips the imports a fresh interpreter
would repeat: the test stays well under a minute) running the `corebench` command with
`COREBENCH_FAULT` naming where it kills itself
(`corebench.core.faults`): in a scoring run, in a cell's training (after an epoch's checkpoint),
just before AutoAttack, between writing a record's temp file and renaming it, and in the middle
of writing the boards. After the reruns every cell has exactly one record, written once and
never rewritten, equal to an uninterrupted run's byte for byte (timings aside), and no temp
file, checkpoint or file the boards' manifest does not list remains.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from corebench.cli import main
from corebench.core.files import orphans_in

from helpers import without_seconds, write_fast_grid

CELLS = ("full", "easycore", "random")  # in the order the grid runs them


def _cli(*args: str, fault: str | None = None, log: Path) -> tuple[int, str]:
    """Run `corebench ARGS` in a forked child; (its exit code, or -signal when killed; its output)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            logging.getLogger().handlers[:] = [logging.StreamHandler(sys.stderr)]
            if fault:
                os.environ["COREBENCH_FAULT"] = fault
            else:
                os.environ.pop("COREBENCH_FAULT", None)
            code = main(list(args))
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, log.read_text()


def _records(results: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(results).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(results.rglob("*.json"))}  # fmt: skip


def _without_timings(blob: bytes) -> dict:
    return without_seconds(json.loads(blob))


def test_a_grid_killed_at_five_points_finishes_every_cell_exactly_once(tmp_path):
    grid = write_fast_grid(tmp_path, name="crash")
    ref_results = tmp_path / "ref"
    assert main(["run", str(grid), "--results", str(ref_results), "--cache", str(tmp_path / "ref-cache"),
                 "--no-progress"]) == 0  # fmt: skip
    reference = _records(ref_results)
    assert len(reference) == len(CELLS)

    results, cache, boards = tmp_path / "res", tmp_path / "cache", tmp_path / "boards"
    run = ("run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress")
    seen: dict[str, tuple[int, bytes]] = {}
    kills = [
        ("scoring", 1),  # easycore's scoring run, after its first epoch (full data is done)
        ("training:epoch 1", 1),  # easycore's training, checkpoint of epoch 1 written
        ("autoattack", 1),  # easycore resumed at epoch 1, trained epoch 2, about to attack
        ("write:seed0.json", 1),  # easycore's record: temp written, not renamed
    ]
    survived = []
    for fault, done_after in kills:
        code, out = _cli(*run, fault=fault, log=tmp_path / "out.txt")
        assert code == -signal.SIGKILL, (fault, code, out[-2000:])
        now = _records(results)
        assert len(now) == done_after, (fault, sorted(now))
        for rel, stamp in seen.items():
            assert now[rel] == stamp, f"{rel} was rewritten by the run killed at {fault}"
        seen = now
        survived.append(fault)
        if fault == "scoring":
            assert list((cache / "scoring").glob("*.pt")), "the killed scoring run left its checkpoint"
    assert list((cache / "checkpoints").glob("*.pt")), "the killed cell left its checkpoint"
    assert orphans_in(results), "the kill between write and rename left a temp file"

    code, out = _cli(*run, log=tmp_path / "out.txt")
    assert code == 0, out[-2000:]
    assert "3 cells, 1 already done, 2 finished, 0 failed" in out
    final = _records(results)
    assert sorted(final) == sorted(reference)
    for rel, stamp in seen.items():
        assert final[rel] == stamp, f"{rel} was rewritten by the rerun"
    for rel, (_, blob) in final.items():  # resumed, rerun or not: the uninterrupted numbers
        assert _without_timings(blob) == _without_timings(reference[rel][1]), rel
        assert (results / rel).with_name("seed0.indices.npy").is_file()

    code, out = _cli("leaderboard", str(results), "--out", str(boards), fault="board", log=tmp_path / "out.txt")
    assert code == -signal.SIGKILL, out[-2000:]
    survived.append("board")
    code, out = _cli("leaderboard", str(results), "--out", str(boards), log=tmp_path / "out.txt")
    assert code == 0, out[-2000:]

    manifest = [ln for ln in (boards / ".corebench-generated").read_text().splitlines() if not ln.startswith("#")]
    on_disk = sorted(p.relative_to(boards).as_posix() for p in boards.rglob("*") if p.is_file())
    assert sorted([*manifest, ".corebench-generated"]) == on_disk  # nothing unlisted, nothing missing
    (tmp_path / "out.txt").unlink()
    assert not orphans_in(tmp_path), orphans_in(tmp_path)
    assert not list((cache / "checkpoints").glob("*")), "checkpoints are removed once records are written"
    assert not list((cache / "scoring").glob("*.pt")), "and scoring checkpoints once their entry is written"
    assert survived == ["scoring", "training:epoch 1", "autoattack", "write:seed0.json", "board"]
