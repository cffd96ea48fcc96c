"""Where a grid stands across all its workers: done, running (where, since when), failed, pending.

Read from the shared results folder only: the records say what is done or failed, the claims
(`corebench.store.claims`) what is running and where. A claim whose holder is gone does not count as
running; its cell is pending (or failed, if its last attempt wrote a failed record) until a
worker takes it over. A finished record made under other settings or data than the grid's
(stale) is pending too: `run` reruns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corebench.store.claims import Claim, claims_under
from corebench.store.inputs import unchanged
from corebench.store.record import Record
from corebench.store.results import DONE, FAILED, MALFORMED, STALE, scan


@dataclass
class GridProgress:
    name: str
    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (record, error)
    running: list[tuple[Path, Claim]] = field(default_factory=list)
    stale_claims: list[tuple[Path, Claim, str]] = field(default_factory=list)  # (record, claim, why the holder is gone)
    stale_records: list[tuple[Path, str]] = field(default_factory=list)  # (record, what changed): rerun
    malformed: list[tuple[Path, str]] = field(default_factory=list)
    not_run: int | None = None  # cells without a record: known only with the grid's cells
    outside: list[Path] = field(default_factory=list)  # records in the grid's folder that are no cell of it

    @property
    def pending(self) -> int | None:
        """Cells not done: running, failed, stale, malformed or not run yet (with the grid's cells)."""
        if self.not_run is None:
            return None
        return len(self.running) + len(self.failed) + len(self.stale_records) + len(self.malformed) + self.not_run

    @property
    def total(self) -> int | None:
        return None if self.pending is None else self.done + self.pending


def progress(results_dir: Path, grid: tuple[str, list[tuple[Path, str, str]]] | None = None,
             cache_dir: Path | None = None) -> list[GridProgress]:
    """Per grid found under `results_dir`; or, given a grid's name and its cells' record paths
    with their states and, for a stale one, what changed (`work.grid_states`,
    `work.stale_reason`), for that grid alone, counting its pending cells.

    A record whose inputs changed (`inputs.changed_inputs`: its indices file, and its scoring
    runs' signals in `cache_dir` when given) counts as malformed, with what changed. With the
    grid, a record in the grid's folder that is no cell of the grid (a seed it does not have)
    is named in `outside`."""
    results_dir = Path(results_dir)
    records, problems = scan(results_dir)
    records, changed = unchanged(records, [], cache_dir)
    problems += changed
    by_path = {s.path.resolve(): s.record for s in records}
    claims = {rec.resolve(): (claim, gone) for rec, claim, gone in claims_under(results_dir)}
    if grid is not None:
        name, states = grid
        g = GridProgress(name, not_run=0)
        bad = {Path(p).resolve(): why for p, why in problems}
        cells = {Path(p).resolve() for p, _, _ in states}
        g.outside = sorted(p for p in set(by_path) | set(bad)
                           if p not in cells and _grid_of(p, results_dir.resolve(), by_path.get(p)) == name)
        for path, state, why in states:
            path = Path(path).resolve()
            if state == DONE and path in bad:  # its inputs changed since it was written
                g.malformed.append((path, bad[path]))
            elif state == DONE:
                g.done += 1
            elif _running(g, path, claims):
                continue
            elif state == FAILED:
                g.failed.append((path, by_path[path].error or "") if path in by_path else (path, ""))
            elif state == STALE:
                g.stale_records.append((path, why))
            elif state == MALFORMED:
                g.malformed.append((path, bad.get(path, "not a valid record for this cell")))
            else:
                g.not_run += 1
        return [g]
    grids: dict[str, GridProgress] = {}
    for path in sorted(set(by_path) | set(claims)):
        record = by_path.get(path)
        g = grids.setdefault(_grid_of(path, results_dir.resolve(), record), GridProgress(""))
        g.name = _grid_of(path, results_dir.resolve(), record)
        if record is not None and record.status == "ok":
            g.done += 1
        elif not _running(g, path, claims) and record is not None:
            g.failed.append((path, record.error or ""))
    for path, why in problems:
        name = _grid_of(path.resolve(), results_dir.resolve(), None)
        grids.setdefault(name, GridProgress(name)).malformed.append((path, why))
    return [grids[name] for name in sorted(grids)]


def _running(g: GridProgress, path: Path, claims: dict[Path, tuple[Claim, str | None]]) -> bool:
    """Count the cell as running when it has a live claim; note a claim whose holder is gone."""
    claim, gone = claims.get(path, (None, None))
    if claim is None:
        return False
    if gone is None:
        g.running.append((path, claim))
        return True
    g.stale_claims.append((path, claim, gone))
    return False


def _grid_of(path: Path, results_dir: Path, record: Record | None) -> str:
    if record is not None:
        return record.grid.name
    try:
        return path.relative_to(results_dir).parts[0]
    except (ValueError, IndexError):
        return "?"
