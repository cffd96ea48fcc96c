"""A results folder shared by many workers: claims, stale-claim recovery, status across workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml

from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.drivers.status import progress
from corebench.store.claims import (
    Claim,
    Outcome,
    claim_path,
    holding,
    read_claim,
    release,
    try_claim,
)
from corebench.store.results import DONE, FAILED, MISSING, STALE, write_record

from records import example_record, relpath

REPO = Path(__file__).resolve().parents[1]


def a_claim(**changes) -> Claim:
    now = time.time()
    base = Claim(host=socket.gethostname(), pid=os.getpid(), pid_started="0", started=now, heartbeat=now,
                 job="", token="theirs")  # fmt: skip
    return replace(base, **changes)


def put(record: Path, claim: Claim) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    claim_path(record).write_text(json.dumps(asdict(claim)))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_claim_keeps_the_cell_and_release_frees_it(tmp_path):
    record = tmp_path / "g" / "seed0.json"
    outcome, mine = try_claim(record)
    assert outcome.state == "claimed" and mine is not None
    held = read_claim(record)
    assert (held.host, held.pid) == (socket.gethostname(), os.getpid()) and held.started <= time.time()
    again, none = try_claim(record)  # our own process is alive: busy, even for us
    assert again.state == "busy" and again.holder.token == mine.token and none is None
    release(record, mine)
    assert not claim_path(record).exists()
    assert try_claim(record)[0].state == "claimed"


def test_a_done_cell_is_not_claimed_unless_forced(tmp_path):
    done = example_record()
    record = tmp_path / relpath(done)
    write_record(record, done)
    assert try_claim(record) == (Outcome("done"), None)
    assert try_claim(record, cell_id=done["cell_id"])[0].state == "done"
    assert try_claim(record, cell_id="another-id")[0].state == "claimed"  # stale: made by other settings
    release(record, read_claim(record))
    assert try_claim(record, force=True)[0].state == "claimed"
    release(record, read_claim(record))
    write_record(record, example_record(error="RuntimeError: boom"))  # a failed cell is retried
    assert try_claim(record)[0].state == "claimed"


@pytest.mark.parametrize(
    ("holder", "taken"),
    [
        (dict(pid_started="0"), True),  # same pid number, but another (newer) process: pid reused
        (dict(host="elsewhere", heartbeat=time.time() - 3600), True),  # another host, silent for an hour
        (dict(host="elsewhere"), False),  # another host, fresh heartbeat
    ],
)
def test_a_claim_whose_holder_is_gone_is_taken_over(tmp_path, holder, taken):
    record = tmp_path / "seed0.json"
    put(record, a_claim(**holder))
    outcome, mine = try_claim(record)
    assert (outcome.state == "claimed") is taken
    assert read_claim(record).token == (mine.token if taken else "theirs")


def test_a_requeued_slurm_task_takes_its_own_claim_back_on_any_host(tmp_path, monkeypatch):
    record = tmp_path / "seed0.json"
    put(record, a_claim(host="node17", job="81_3"))  # fresh heartbeat from another host
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "81")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert try_claim(record)[0].state == "busy"  # another task's cell
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    outcome, mine = try_claim(record)  # the same task, requeued: its earlier run was killed
    assert outcome.state == "claimed" and mine.job == "81_3"


def test_a_dead_process_on_this_host_loses_its_claim(tmp_path):
    record = tmp_path / "seed0.json"
    put(record, a_claim(pid=dead_pid(), pid_started="123"))
    assert read_claim(record).gone() is not None and "has ended" in read_claim(record).gone()
    assert try_claim(record)[0].state == "claimed"


def test_holding_beats_and_releases_even_when_the_cell_raises(tmp_path):
    record = tmp_path / "seed0.json"
    with pytest.raises(RuntimeError), holding(record, heartbeat_s=0.02) as outcome:
        assert outcome.state == "claimed"
        first = read_claim(record).heartbeat
        time.sleep(0.2)
        assert read_claim(record).heartbeat > first
        raise RuntimeError("cell crashed")
    assert not claim_path(record).exists()


def test_a_taken_over_claim_is_not_removed_by_its_old_holder(tmp_path):
    record = tmp_path / "seed0.json"
    _, mine = try_claim(record)
    put(record, a_claim(host="elsewhere", token="new-holder"))
    release(record, mine)
    assert read_claim(record).token == "new-holder"


def test_concurrent_claims_give_the_cell_to_one_thread(tmp_path):
    record = tmp_path / "seed0.json"
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(try_claim(record)[0].state)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy"] * 7 + ["claimed"]


GRID = {"name": "shared", "datasets": ["digits"], "architectures": ["resnet18"], "fractions": [0.3],
        "methods": ["random", "easycore"], "regimes": ["standard"], "seeds": [0, 1]}  # fmt: skip


def test_status_reports_done_running_failed_and_pending_across_workers(tmp_path, capsys):
    from corebench.compute.datasets import load_dataset
    from corebench.drivers.work import cell_id

    spec = parse_grid(GRID)
    res = tmp_path / "res"
    cells = spec.cells()  # 6 cells: full, random, easycore x 2 seeds
    paths = [res / c.relpath("shared") for c in cells]
    done = example_record(grid="shared", method="full", fraction=1.0)
    done["cell_id"] = cell_id(spec, cells[0], load_dataset(cells[0].dataset), {})  # the grid's own cell
    write_record(paths[0], done)
    write_record(paths[1], example_record(grid="shared", method="random", error="RuntimeError: boom"))
    put(paths[2], a_claim(host="node17", pid=4242, job="77_3", started=time.mktime((2026, 11, 27, 9, 30, 0, 0, 0, -1))))
    put(paths[3], a_claim(host="node18", heartbeat=time.time() - 3600))  # holder gone: pending
    write_record(paths[4], example_record(grid="shared", method="random", seed=1))  # other settings: stale

    kinds = [DONE, FAILED, MISSING, MISSING, STALE, MISSING]
    states = [(p, s, "seed: 0 -> 1" if s == STALE else "") for p, s in zip(paths, kinds, strict=True)]
    (g,) = progress(res, ("shared", states))
    assert (g.total, g.done, len(g.running), len(g.failed), len(g.stale_records), g.not_run) == (6, 1, 1, 1, 1, 2)
    assert g.running[0][1].host == "node17" and len(g.stale_claims) == 1 and g.stale_records == [(paths[4].resolve(), "seed: 0 -> 1")]

    assert main(["status", str(res), "--grid", _write(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grid shared: 1 of 6 cells done, 5 pending (1 stale, 1 failed, 0 malformed, 2 not run, 1 running)" in out
    assert "running: shared/digits/resnet18/standard/easycore/f0.3/seed0.json on node17 (pid 4242, job 77_3) since 2026-11-27 09:30:00" in out
    assert "failed: shared/digits/resnet18/standard/random/f0.3/seed0.json: RuntimeError: boom" in out
    assert "stale claim: shared/digits/resnet18/standard/full/f1/seed1.json: no heartbeat from node18" in out
    assert "stale: shared/digits/resnet18/standard/random/f0.3/seed1.json: made under other settings" in out
    assert main(["status", str(res)]) == 0  # without the grid: what the folder holds
    assert "grid shared: 2 done, 1 running, 1 failed" in capsys.readouterr().out


def _write(tmp_path: Path) -> str:
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(GRID))
    return str(path)


def test_two_run_processes_split_a_grid_and_run_no_cell_twice(tmp_path):
    grid = {**GRID, "name": "split", "methods": ["random", "easycore", "moderate"],
            "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
            "scoring": {"epochs": 1}, "training": {"epochs": 2},
            "evaluation": {"n_examples": 30, "pgd_steps": 2, "autoattack": {"enabled": False}}}  # fmt: skip
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, "-m", "corebench.cli", "run", str(path), "--results", str(tmp_path / "res"),
           "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    finished = [_count(out, "finished") for out in outs]
    total = len(parse_grid(grid).cells())  # 2 seeds x (1 full + 3 methods) = 8
    assert total == 8 and sum(finished) == total, outs  # a cell run twice would be counted twice
    assert min(finished) > 0, outs  # both did some of the work
    records = list((tmp_path / "res").rglob("*.json"))
    assert len(records) == total and all(json.loads(p.read_text())["status"] == "ok" for p in records)
    assert not list((tmp_path / "res").rglob("*.claim"))


def _count(out: str, what: str) -> int:
    line = next(ln for ln in out.splitlines() if ln.startswith("grid split:"))
    return int(line.split(f" {what}")[0].rsplit(" ", 1)[1])
