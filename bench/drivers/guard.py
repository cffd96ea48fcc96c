"""A wall-clock guard for a grid run (`corebench run --deadline HH:MM | --time-limit SECONDS`).

A GPU allocation or a Slurm job ends at a fixed time, and a cell cut off there loses the work
it did. So before each cell the runner asks `Deadline.fits`: a cell starts only when its
expected seconds end before the deadline. A running cell is never stopped; cells that were not
started are reported as deferred, and the next `corebench run` picks them up.

A cell's expected seconds are its estimate (from `corebench plan`'s throughput probe, which the
CLI hands over; the first cell of a scoring run carries that run's cost too), scaled by how
long the cells finished so far took against their estimates, so a probe that was optimistic on
this machine is corrected after the first cell. Without estimates, the longest cell finished so
far in this run is the expectation (nothing is refused before the first cell has finished).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field

from corebench.core.errors import invalid


@dataclass
class Deadline:
    """No cell starts after `at` (seconds since the epoch, `time.time()`) unless it is expected
    to end by then. `estimates`: expected seconds per cell id (picklable, so a worker process
    checks its own cells)."""

    at: float
    estimates: dict[str, float] = field(default_factory=dict)
    observed: list[tuple[float, float]] = field(default_factory=list)  # (estimated, actual) per finished cell

    def expected(self, cell_id: str) -> float:
        """Seconds the cell is expected to take: its estimate times the observed ratio."""
        known = [(e, a) for e, a in self.observed if e > 0]
        if cell_id in self.estimates:
            ratio = sum(a for _, a in known) / sum(e for e, _ in known) if known else 1.0
            return self.estimates[cell_id] * ratio
        return max((a for _, a in self.observed), default=0.0)

    def fits(self, cell_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now + self.expected(cell_id) <= self.at

    def observe(self, cell_id: str, seconds: float) -> None:
        self.observed.append((self.estimates.get(cell_id, 0.0), seconds))

    def label(self) -> str:
        return dt.datetime.fromtimestamp(self.at).strftime("%H:%M:%S")


def deadline_from(deadline: str | None, time_limit: str | None, now: float | None = None) -> float | None:
    """The deadline of `--deadline HH:MM` (the next such local time, today or tomorrow) or of
    `--time-limit SECONDS` (from now), as seconds since the epoch; None without either."""
    now = time.time() if now is None else now
    if deadline is not None and time_limit is not None:
        raise invalid("deadline", deadline, "either a deadline or a time limit, not both")
    if time_limit is not None:
        try:
            seconds = float(time_limit)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0 or seconds == float("inf"):
            raise invalid("time_limit", time_limit, "a number of seconds >= 0, e.g. 540")
        return now + seconds
    if deadline is None:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", deadline.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise invalid("deadline", deadline, "a local time HH:MM (00:00 to 23:59), e.g. 08:35")
    today = dt.datetime.fromtimestamp(now)
    at = today.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    if at.timestamp() <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()
