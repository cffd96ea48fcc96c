"""Crash points for the crash tests: a process kills itself at a named point when asked to.

The crash tests (tests/test_crashes.py) run a grid in a subprocess with `COREBENCH_FAULT` set
and check that a rerun finishes every cell exactly once and leaves no partial file behind.
The variable names a point and, optionally, a detail the point must mention and how many hits
to let through first: `training@2` kills at the second epoch end of any training run,
`write:seed0.json` while the first record named seed0.json is being written. Unset (always,
outside the tests), `fault_point` is one dictionary look-up.

Points: `scoring` (an epoch of a scoring run ended), `training` (an epoch of a cell's training
ended and its checkpoint is written), `autoattack` (AutoAttack is about to run), `write` (a
temp file is written and about to be renamed over its target), `board` (leaderboard pages are
written, the plots and the manifest not yet).
"""

from __future__ import annotations

import os
import signal

ENV = "COREBENCH_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str, detail: str = "") -> None:
    """SIGKILL this process if `COREBENCH_FAULT` asks for this point (see the module docstring)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, count = wanted.partition("@")
    point, _, must_mention = point.partition(":")
    if point != name or must_mention not in detail:
        return
    _hits[wanted] = _hits.get(wanted, 0) + 1
    if _hits[wanted] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
