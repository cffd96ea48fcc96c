"""Who runs which cell: claims in a results folder shared by many workers (and hosts).

Before a worker runs a cell it claims it; a cell with a live claim is someone else's, so no two
workers run the same cell, whether they are `--workers` processes, two `corebench run` on one
grid, or Slurm array tasks on a network filesystem. Next to the cell's record `seed0.json`:

- `seed0.lock`: a `filelock` lock, held only for the moment a claim is read and changed, so the
  look-and-take is atomic;
- `seed0.claim`: JSON naming the holder (host, pid, the process's start time, Slurm job id),
  when it started and its last heartbeat; written atomically, refreshed every `heartbeat_s`
  by a thread of the holder, removed when the cell's record is written.

A claim whose holder is gone is taken over: on the same host when its pid is not alive (or is a
newer process with the same pid), on another host when its heartbeat is older than `stale_s`,
and at once by the next run of the same Slurm job (a requeued task, wherever it lands: Slurm
runs a job id once at a time).
So a killed worker, a requeued Slurm task or a dead node never leaves a cell blocked for long.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from filelock import FileLock

from corebench.core.files import cannot_write, inside, make_folder
from corebench.store.results import is_done, write_atomic

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0  # a holder refreshes its claim this often
STALE_S = 300.0  # a claim from another host without a heartbeat for this long is taken over
LOCK_TIMEOUT_S = 120.0  # the lock is held for milliseconds; waiting longer means a broken filesystem


@dataclass(frozen=True)
class Claim:
    """The holder of a cell: where it runs, since when, and when it last said it is alive."""

    host: str
    pid: int
    pid_started: str  # the process's start time (/proc/PID/stat), so a reused pid is not mistaken
    started: float  # unix time the claim was taken
    heartbeat: float  # unix time of the last refresh
    job: str  # Slurm job id ("" outside Slurm)
    token: str  # unique per claim: a holder only refreshes or removes its own

    def gone(self, *, stale_s: float = STALE_S, now: float | None = None) -> str | None:
        """Why the holder is gone (its claim may be taken over), or None while it lives."""
        if self.job and self.job == _slurm_job() and (self.host, self.pid) != (socket.gethostname(), os.getpid()):
            return f"its Slurm job {self.job} was requeued (this is its next run)"
        if self.host == socket.gethostname():
            if _process_started(self.pid) != self.pid_started:
                return f"its process {self.pid} on {self.host} has ended"
            return None
        age = (time.time() if now is None else now) - self.heartbeat
        if age > stale_s:
            return f"no heartbeat from {self.host} for {age:.0f} s"
        return None


def claim_path(record: Path) -> Path:
    return Path(record).with_suffix(".claim")


def lock_path(record: Path) -> Path:
    return Path(record).with_suffix(".lock")


def read_claim(record: Path) -> Claim | None:
    """The cell's claim, or None (no claim, or an unreadable one, which counts as none)."""
    try:
        return Claim(**json.loads(claim_path(record).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _process_started(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot; '' when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
        return "alive"
    except PermissionError:
        return "alive"
    except OSError:
        return ""


def _write(record: Path, claim: Claim, root: Path | None) -> None:
    text = json.dumps(asdict(claim), sort_keys=True)
    write_atomic(claim_path(record), lambda f: f.write(text.encode()), fsync=False, sweep=False, root=root)


def _lock(record: Path, root: Path | None) -> FileLock:
    """The cell's lock, its file checked inside `root` first (a link planted in the results
    folder must not make the lock, or anything after it, land outside)."""
    if root is not None:
        inside(root, lock_path(record))
        inside(root, claim_path(record))
    return FileLock(lock_path(record), timeout=LOCK_TIMEOUT_S)


def _new_claim() -> Claim:
    now = time.time()
    return Claim(host=socket.gethostname(), pid=os.getpid(), pid_started=_process_started(os.getpid()),
                 started=now, heartbeat=now, job=_slurm_job(), token=uuid.uuid4().hex)  # fmt: skip


def _slurm_job() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


@dataclass(frozen=True)
class Outcome:
    """What trying to claim a cell found: 'claimed' (run it), 'done', or 'busy' (with the holder)."""

    state: str
    holder: Claim | None = None


def try_claim(record: Path, *, cell_id: str | None = None, force: bool = False,
              stale_s: float = STALE_S, root: Path | None = None) -> tuple[Outcome, Claim | None]:
    """Claim the cell of `record` unless it is done (a finished record made for `cell_id`;
    never with `force`) or held by a live worker.

    With `root` (the results folder), the lock and claim files must resolve inside it
    (`files.inside`), checked before either is made. Returns the outcome and, when claimed,
    our claim (pass it to `refresh` and `release`).
    """
    record = Path(record)
    if root is not None:
        inside(root, record.parent)
    make_folder(record.parent)
    lock = _lock(record, root)
    try:
        lock.acquire()
    except OSError as exc:  # a read-only folder: FileLock cannot make its file
        raise cannot_write(lock_path(record), exc) from None
    try:
        return _take(record, cell_id, force, stale_s, root)
    finally:
        lock.release()


def _take(record: Path, cell_id: str | None, force: bool, stale_s: float, root: Path | None) -> tuple[Outcome, Claim | None]:
    """`try_claim`'s look-and-take, under the cell's lock."""
    if not force and is_done(record, cell_id):
        return Outcome("done"), None
    held = read_claim(record)
    if held is not None:
        why = held.gone(stale_s=stale_s)
        if why is None:
            return Outcome("busy", held), None
        log.info("taking over %s: %s", record, why)
    mine = _new_claim()
    _write(record, mine, root)
    return Outcome("claimed"), mine


def refresh(record: Path, mine: Claim, root: Path | None = None) -> bool:
    """Renew our heartbeat; False when the claim is no longer ours (taken over)."""
    with _lock(record, root):
        held = read_claim(record)
        if held is None or held.token != mine.token:
            return False
        _write(record, replace(held, heartbeat=time.time()), root)
        return True


def release(record: Path, mine: Claim, root: Path | None = None) -> None:
    """Remove our claim (after the record is written, or when giving the cell back)."""
    with _lock(record, root):
        held = read_claim(record)
        if held is not None and held.token == mine.token:
            claim_path(record).unlink(missing_ok=True)


@contextmanager
def holding(record: Path, *, cell_id: str | None = None, force: bool = False, stale_s: float = STALE_S,
            heartbeat_s: float = HEARTBEAT_S, root: Path | None = None) -> Iterator[Outcome]:
    """Claim the cell for the block (`try_claim`), with a heartbeat thread, and release it afterwards.

    The block runs the cell only when the outcome's state is 'claimed'.
    """
    outcome, mine = try_claim(record, cell_id=cell_id, force=force, stale_s=stale_s, root=root)
    if mine is None:
        yield outcome
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                if not refresh(record, mine, root):
                    log.warning("%s: another worker took this cell over", record)
                    return
            except Exception as exc:  # a hiccup of the filesystem: try again next beat
                log.warning("%s: heartbeat failed (%s)", record, exc)

    thread = threading.Thread(target=beat, name=f"claim-heartbeat {record.name}", daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        stop.set()
        thread.join()
        release(record, mine, root)


def claims_under(results_dir: Path, *, stale_s: float = STALE_S) -> list[tuple[Path, Claim, str | None]]:
    """Every claim under `results_dir` as (record path, claim, why its holder is gone or None)."""
    out = []
    for path in sorted(Path(results_dir).rglob("*.claim")):
        record = path.with_suffix(".json")
        claim = read_claim(record)
        if claim is not None:
            out.append((record, claim, claim.gone(stale_s=stale_s)))
    return out
