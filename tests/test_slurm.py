"""The Slurm executor against a real one-node Slurm cluster (scripts/slurm-cluster.sh).

A small grid goes through submitit as job arrays, scoring first, the cells that read it after
it (afterok); `corebench status` must agree with the records. A cell requeued mid-training with
`scontrol requeue`, and one preempted with USR2 (submitit's checkpoint hook), resume from their
per-epoch checkpoint and end with the metrics of an uninterrupted run.

The cluster needs root and apt-get (or the Debian packages installed). Where it cannot start,
these tests are skipped with the reason; under CI (CI=true) they fail instead, since CI runs
where it can start. The fixture starts the cluster when it is down and never stops it: other
checkouts may share it; `.ci/run` stops it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.drivers.executors import submit_grid

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
SHIM = REPO / "scripts" / "slurm-bin"  # sacct for a cluster without accounting
WAIT_S = 600  # jobs of other checkouts' tests may share the node's two CPUs

pytestmark = pytest.mark.slurm

TINY = {
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "fractions": [0.3],
    "regimes": ["standard"],
    "seeds": [0],
    "scoring": {"epochs": 1},
    "training": {"epochs": 1},
    "evaluation": {"n_examples": 30, "pgd_steps": 2, "autoattack": {"version": "custom", "attacks": ["apgd-ce"]}},
    "device": "cpu",
    "slurm": {"time": 60},  # > 10 min: submitit reads any USR2 in a shorter job as its time limit
}


def cluster_unavailable() -> str | None:
    """Why the test cluster cannot run here, or None once it runs."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (apt-get, munge key, slurmd)"
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    try:
        proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return f"{SCRIPT.name} start did not finish in 600 s"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"{SCRIPT.name} start exited {proc.returncode}"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = cluster_unavailable()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI runs the Slurm tests, but the cluster did not start: {reason}")
        pytest.skip(reason)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{SHIM}:{path}"
    yield
    os.environ["PATH"] = path


def job_info(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def wait_until_gone(jobs: list[str], timeout: float = WAIT_S) -> None:
    """Until none of `jobs` is pending, running or completing."""
    end = time.time() + timeout
    while True:
        out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], capture_output=True, text=True).stdout
        if not out.strip():
            return
        if time.time() > end:
            subprocess.run(["scancel", *jobs])
            pytest.fail(f"jobs {jobs} still queued after {timeout} s:\n{out}")
        time.sleep(0.5)


def wait_for(check, what: str, timeout: float = WAIT_S):
    end = time.time() + timeout
    while not (found := check()):
        if time.time() > end:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.2)
    return found


def stamp(value: str) -> float:
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%S"))


def test_a_grid_runs_as_job_arrays_scoring_first_and_status_agrees(slurm, tmp_path, capsys):
    from corebench.drivers.status import progress

    grid = {**TINY, "name": "arrays", "methods": ["random", "easycore", "moderate"], "full_data_reference": False}
    spec = parse_grid(grid)
    sub = submit_grid(spec, tmp_path / "res", cache_dir=tmp_path / "cache", log_dir=tmp_path / "logs")
    jobs = sub.scoring_jobs + list(sub.cell_jobs.values())
    seen_running = set()
    try:
        (scoring,) = sub.scoring_jobs  # one scoring run: digits x r18w4 x seed 0, for easycore and moderate
        by_method = {path.split("/")[4]: job for path, job in sub.cell_jobs.items()}
        assert set(by_method) == {"random", "easycore", "moderate"}
        assert sub.dependencies[by_method["random"]] == []  # reads no scoring run: starts at once
        for method in ("easycore", "moderate"):  # one array of two tasks, after the scoring run
            assert re.fullmatch(r"\d+_[01]", by_method[method]) and sub.dependencies[by_method[method]] == [scoring]
        script = (tmp_path / "logs" / by_method["easycore"].split("_")[0] / f"{by_method['easycore'].split('_')[0]}_submission.sh").read_text()
        assert f"#SBATCH --dependency=afterok:{scoring}" in script and "#SBATCH --array=0-1" in script

        end = time.time() + WAIT_S
        while subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], capture_output=True, text=True).stdout.strip():
            for g in progress(tmp_path / "res") if (tmp_path / "res").is_dir() else []:
                seen_running |= {(c.host, c.job) for _, c in g.running}
            assert time.time() < end, "the grid's jobs did not finish"
            time.sleep(0.3)
    finally:
        subprocess.run(["scancel", *jobs])
        wait_until_gone(jobs)

    records = {p.parts[-3]: json.loads(p.read_text()) for p in (tmp_path / "res").rglob("seed0.json")}
    assert {m: r["status"] for m, r in records.items()} == dict.fromkeys(("random", "easycore", "moderate"), "ok")
    scoring_end = stamp(job_info(scoring)["EndTime"])
    for method in ("easycore", "moderate"):  # waited for the scoring run (afterok)
        assert stamp(job_info(by_method[method])["StartTime"]) >= scoring_end
    assert seen_running and all(host == socket.gethostname() for host, _ in seen_running)
    assert {job for _, job in seen_running} <= set(jobs)  # status named the array tasks running the cells

    grid_file = tmp_path / "arrays.yaml"
    grid_file.write_text(json.dumps(grid))
    capsys.readouterr()
    assert main(["status", str(tmp_path / "res"), "--grid", str(grid_file)]) == 0
    assert "grid arrays: 3 of 3 cells done, 0 pending (0 stale, 0 failed, 0 malformed, 0 not run, 0 running)" in (
        capsys.readouterr().out)
    assert not list((tmp_path / "res").rglob("*.claim"))


@pytest.fixture(scope="module")
def interrupted(slurm, tmp_path_factory):
    """One cell submitted twice (own results and cache each), both paused after epoch 1 of 3:
    one is requeued with `scontrol requeue`, the other preempted with USR2; meanwhile the same
    cell runs uninterrupted here."""
    from corebench.drivers.runner import run_grid

    tmp = tmp_path_factory.mktemp("requeue")
    spec = parse_grid({**TINY, "name": "requeue", "methods": ["random"], "full_data_reference": False,
                       "training": {"epochs": 3}})  # fmt: skip
    os.environ["COREBENCH_PAUSE"] = "training:epoch 1=120"  # the jobs inherit it; a resumed run never ends epoch 1
    try:
        subs = {how: submit_grid(spec, tmp / how / "res", cache_dir=tmp / how / "cache", log_dir=tmp / how / "logs")
                for how in ("requeue", "usr2")}  # fmt: skip
    finally:
        del os.environ["COREBENCH_PAUSE"]
    jobs = {how: next(iter(sub.cell_jobs.values())) for how, sub in subs.items()}
    try:
        checkpoints = {how: tmp / how / "cache" / "checkpoints" for how in jobs}
        running = {}
        for how in jobs:
            wait_for(lambda how=how: list(checkpoints[how].glob("*.pt")), f"checkpoint of epoch 1 ({how})")
            running[how] = _status(tmp / how / "res")  # while paused after epoch 1
        subprocess.run(["scontrol", "requeue", jobs["requeue"]], check=True)
        subprocess.run(["scancel", "--signal=USR2", jobs["usr2"]], check=True)
        reference = run_grid(spec, tmp / "reference" / "res", cache_dir=tmp / "reference" / "cache", progress=False)
        assert reference.finished == 1
        wait_until_gone(list(jobs.values()))
    finally:
        subprocess.run(["scancel", *jobs.values()])
    return tmp, jobs, running


def _status(res: Path) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["status", str(res)])
    return out.getvalue()


def _record(folder: Path) -> dict:
    (path,) = folder.rglob("seed0.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("how", ["requeue", "usr2"])
def test_an_interrupted_cell_resumes_from_its_checkpoint_with_the_uninterrupted_metrics(interrupted, how):
    tmp, jobs, running = interrupted
    job = jobs[how]
    assert "grid requeue: 0 done, 1 running, 0 failed" in running[how]
    assert f"on {socket.gethostname()} " in running[how] and f"job {job}" in running[how]

    info = job_info(job)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    log = "".join(p.read_text() for p in (tmp / how / "logs").rglob("*_log.err"))
    if how == "usr2":  # submitit's hook: checkpoint() ran, then submitit requeued the task itself
        assert "Caught signal SIGUSR2" in log and "preempted; it resumes from its last checkpoint" in log
    else:  # Slurm killed the task; no hook ran
        assert "DUE TO JOB REQUEUE" in log and "SIGUSR2" not in log and "preempted" not in log
    assert "resuming standard training at pass 1 of 3" in log  # the second run started from the checkpoint

    record, reference = _record(tmp / how / "res"), _record(tmp / "reference" / "res")
    assert record["status"] == "ok" and record["metrics"] == reference["metrics"]
    assert record["cell_id"] == reference["cell_id"]
    assert not list((tmp / how / "cache" / "checkpoints").glob("*.pt"))  # removed with the record written
    assert not list((tmp / how / "res").rglob("*.claim"))
