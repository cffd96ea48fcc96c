"""Crash points for the crash tests: a process kills itself at a named point when asked to.

The crash tests (tests/test_crashes.py) run a grid in a subprocess with `COREBENCH_FAULT` set
and check that a rerun finishes every cell exactly once and leaves no partial file behind.
The variable names a point and, optionally, a detail the point must mention and how many hits
to let through first: `training@2` kills at the second epoch end of any training run,
`write:seed0.json` while the first record named seed0.json is being written. Unset (always,
outside the tests), `fault_point` is two dictionary look-ups. `COREBENCH_PAUSE` takes the same
form plus `=SECONDS` and sleeps there once, so the Slurm tests requeue or preempt a cell at a
known point of its training (tests/test_slurm.py).

Points: `scoring` (an epoch of a scoring run ended), `training` (an epoch of a cell's training
ended and its checkpoint is written), `autoattack` (AutoAttack is about to run), `write` (a
temp file is written and about to be renamed over its target), `board` (leaderboard pages are
written, the plots and the manifest not yet).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "COREBENCH_FAULT"
PAUSE_ENV = "COREBENCH_PAUSE"  # `point[:detail][@N]=SECONDS`: sleep there instead (the Slurm requeue tests)
_hits: dict[str, int] = {}


def fault_point(name: str, detail: str = "") -> None:
    """SIGKILL this process if `COREBENCH_FAULT` asks for this point (see the module docstring);
    sleep if `COREBENCH_PAUSE` does, so a test can requeue or preempt a job at a known point."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        wanted, _, seconds = pause.rpartition("=")
        if _reached(wanted, name, detail):
            time.sleep(float(seconds))
    wanted = os.environ.get(ENV)
    if wanted and _reached(wanted, name, detail):
        os.kill(os.getpid(), signal.SIGKILL)


def _reached(wanted: str, name: str, detail: str) -> bool:
    """True at the N-th hit (default the first) of the point `wanted` names."""
    point, _, count = wanted.partition("@")
    point, _, must_mention = point.partition(":")
    if point != name or must_mention not in detail:
        return False
    _hits[wanted] = _hits.get(wanted, 0) + 1
    return _hits[wanted] == int(count or 1)
