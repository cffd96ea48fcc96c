"""`corebench verify`: re-derive sampled records from their grid and compare them with the stored ones.

RobustBench re-evaluates each entry against its stored accuracy; here any record can be
re-derived: the cell is run again from its grid (the grid file the record names, or
`--grid`), in a scratch results folder with a scratch cache, so its scoring runs, selection,
training and evaluation are all redone, and the new record is compared with the stored one.

- **Exactly on the same CPU kernels.** Runs on one CPU are bit-identical (tests/test_resume.py and
  the crash tests check it), so a record re-derived on a CPU with the same kernels
  (`cell.cpu_kernels`, recorded in its `device`) must agree in every number, in its kept indices
  (byte for byte) and in its inputs' digests. A record made on the portable kernels
  (`corebench.compute.kernels`) is re-derived on them, in a fresh process, on any x86-64 CPU.
- **Within a tolerance elsewhere.** Another CPU's kernels round differently, and CUDA kernels are
  not bit-reproducible across runs and cards, so a coreset may differ by a few samples and the
  accuracies by more than that: then only the accuracies are compared, within `TOLERANCE_PP`
  percentage points (an UNVERIFIED default, not measured across cards; `--tolerance` sets it),
  and the coreset's size and steps exactly. On small runs the difference can exceed any useful
  tolerance (the quickstart's TRADES random 10 % cell: clean accuracy 43-60 % across kernel
  sets of one machine), so such a mismatch says "re-derive on the same kernels", not "edited".

A record is sampled at random (seeded: the same `--seed` verifies the same records) among the
finished records, or named. A record that is no cell of its grid, or was made under other
settings than the grid's (stale), is a mismatch that says so: it cannot be re-derived.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from corebench.cells.grid import load_grid
from corebench.compute.kernels import in_portable_process, made_portable, needs_portable_process
from corebench.compute.optim import resolve_device, torch_threads
from corebench.core.errors import invalid
from corebench.core.spec import FULL_DATA
from corebench.drivers.cell import cpu_kernels, device_name, recorded_kernels, run_cell
from corebench.drivers.work import plan_work, stale_reason
from corebench.store.record import CellKey, Record
from corebench.store.results import Stored, scan

TOLERANCE_PP = 2.0  # accuracy points off the CPU (UNVERIFIED: not measured across GPUs)


@dataclass
class Verdict:
    """One re-derived record: what differs (empty: it matched) and what re-deriving it cost."""

    path: Path
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exact: bool = True
    not_exact_because: str = ""  # why it was compared within a tolerance ('' when exactly)

    @property
    def matched(self) -> bool:
        return not self.mismatches


def choose(results_dir: Path, sample: int, seed: int, named: Sequence[str] = ()) -> list[Stored]:
    """The finished records to verify: those named (paths), else `sample` drawn with `seed`."""
    records, _ = scan(results_dir)
    ok = sorted((s for s in records if s.record.status == "ok"), key=lambda s: str(s.path))
    if named:
        by_path = {s.path.resolve(): s for s in ok}
        out = []
        for name in named:
            stored = by_path.get(Path(name).resolve())
            if stored is None:
                raise invalid("cell", name, f"a finished record under {results_dir}")
            out.append(stored)
        return out
    return random.Random(seed).sample(ok, min(sample, len(ok)))


def verify(results_dir: str | Path, *, sample: int = 3, seed: int = 0, named: Sequence[str] = (),
           grid: str | Path | None = None, tolerance: float | None = None, progress: bool = False) -> list[Verdict]:
    """Re-derive the chosen records (see the module doc); one `Verdict` each, in path order."""
    results_dir = Path(results_dir)
    chosen = choose(results_dir, sample, seed, named)
    by_grid: dict[str, list[Stored]] = {}
    for stored in chosen:
        source = str(grid) if grid is not None else stored.record.grid.source or ""
        by_grid.setdefault(source, []).append(stored)
    verdicts = []
    for source, records in sorted(by_grid.items()):
        if not source:
            verdicts += [Verdict(s.path, ["names no grid file; give --grid"]) for s in records]
            continue
        spec = load_grid(source)
        portable: list[Stored] = []
        native: list[Stored] = []
        for stored in records:  # a record made on the portable kernels is re-derived on them
            (portable if made_portable(recorded_kernels(str(stored.record.device or ""))) else native).append(stored)
        if native:
            verdicts += _verify_grid(spec, native, results_dir, tolerance, progress)
        if portable:
            moved = needs_portable_process("portable", resolve_device(spec.device))
            args = (spec, portable, results_dir, tolerance, progress)
            verdicts += in_portable_process(_verify_grid, *args) if moved else _verify_grid(*args)
    return sorted(verdicts, key=lambda v: str(v.path))


def _verify_grid(spec: Any, records: list[Stored], results_dir: Path, tolerance: float | None,
                 progress: bool) -> list[Verdict]:
    """Re-run the grid's cells of `records` in a scratch folder and compare each (a record is
    matched to its cell by grid name and cell key, wherever the results folder is rooted)."""
    cells = {_key(spec.name, cell.key()): cell for cell in spec.cells()}
    wanted = {_key(s.record.grid.name, s.record.cell): s for s in records}
    out = [Verdict(s.path, [f"no cell of grid {spec.name} ({spec.source}): a seed, fraction or method it "
                            "does not have; it cannot be re-derived"])
           for k, s in wanted.items() if k not in cells]  # fmt: skip
    todo = [cells[k] for k in wanted if k in cells]
    if not todo:
        return out
    device = resolve_device(spec.device)
    with tempfile.TemporaryDirectory(prefix="corebench-verify-") as scratch, torch_threads(spec.threads):
        fresh, cache = Path(scratch) / "results", Path(scratch) / "cache"
        work = plan_work(spec, fresh, cells=todo, cache=cache, force=True, device=device, progress=progress)
        for state in work.states:
            stored = wanted[_key(spec.name, state.cell.key())]
            why = not_exact_because(stored.record, device, tolerance)
            verdict = Verdict(stored.path, exact=not why, not_exact_because=why)
            out.append(verdict)
            if state.cell_id != stored.record.cell_id:
                verdict.mismatches.append(f"made under other settings than the grid's ({stale_reason(state)}); "
                                          "it cannot be re-derived from this grid")
                continue
            start = time.perf_counter()
            method = work.methods.get(state.cell.method) if state.cell.method.name != FULL_DATA else None
            new = run_cell(spec, state.cell, work.datasets[state.cell.dataset], method, work.scorer, device,
                           state.path, progress, results_dir=fresh, cache_dir=cache, state=state)
            verdict.seconds = time.perf_counter() - start
            limit = 0.0 if verdict.exact else (TOLERANCE_PP if tolerance is None else tolerance)
            verdict.mismatches += compare(stored.record, new, verdict.path, state.path, limit, exact=verdict.exact)
    return out


def outside_records(results_dir: str | Path, records: list[Stored] | None = None) -> list[tuple[Path, str]]:
    """Finished records that are no cell of the grid file they name (a seed, fraction or method
    the grid does not have), with that grid: a board built from the folder includes them, so
    `corebench leaderboard` names them. Records whose grid file is not on this machine are not
    judged. `records`: `results.scan(results_dir)`'s, when the caller has read them already."""
    if records is None:
        records, _ = scan(Path(results_dir))
    by_source: dict[str, list[Stored]] = {}
    for stored in records:
        source = stored.record.grid.source or ""
        if stored.record.status == "ok" and source and Path(source).is_file():
            by_source.setdefault(source, []).append(stored)
    out = []
    for source, found in sorted(by_source.items()):
        spec = load_grid(source)
        cells = {_key(spec.name, cell.key()) for cell in spec.cells()}
        out += [(s.path, f"{spec.name} ({source})") for s in found
                if _key(s.record.grid.name, s.record.cell) not in cells]  # fmt: skip
    return sorted(out)


def _key(grid: str, key: Mapping[str, Any] | CellKey) -> str:
    plain = key.model_dump() if isinstance(key, CellKey) else dict(key)
    return json.dumps([grid, plain], sort_keys=True)


def not_exact_because(stored: Record, device: torch.device, tolerance: float | None) -> str:
    """Why a record cannot be compared exactly here ('' when it can: made on a CPU with the
    kernels of this one, re-derived on the CPU, and no tolerance asked for)."""
    made_on = str(stored.device or "")
    if tolerance is not None:
        return "--tolerance given"
    if device.type != "cpu" or not made_on.startswith("cpu"):
        return f"made on {made_on or 'an unrecorded device'}, re-derived on {device_name(device)}"
    kernels = recorded_kernels(made_on)
    if kernels != cpu_kernels():
        return f"made with CPU {kernels or 'kernels not recorded'}, re-derived with {cpu_kernels()}"
    return ""


def compare(stored: Record, new: Record, stored_path: Path, new_path: Path,
            tolerance: float, *, exact: bool) -> list[str]:
    """What differs between a stored record and its re-derivation, one 'field: stored X, re-derived Y' each."""
    if new.status != "ok":
        return [f"re-deriving it failed: {new.error}"]
    out = []
    s, n = stored.metrics, new.metrics
    pairs: list[tuple[str, Any, Any]] = [("metrics.clean_acc", s.clean_acc, n.clean_acc)]
    for i, (a, b) in enumerate(zip(s.robust or [s], n.robust or [n], strict=False)):
        where = f"metrics.robust[{i}]" if s.robust else "metrics"
        pairs += [(f"{where}.pgd_acc", a.pgd_acc, b.pgd_acc), (f"{where}.autoattack_acc", a.autoattack_acc, b.autoattack_acc)]
        for k in sorted(set(a.autoattack_per_attack) | set(b.autoattack_per_attack)):
            pairs.append((f"{where}.autoattack_per_attack.{k}", a.autoattack_per_attack.get(k),
                          b.autoattack_per_attack.get(k)))
    for where, x, y in pairs:
        if (x is None) != (y is None) or (x is not None and abs(x - y) > tolerance + 1e-9):
            out.append(f"{where}: stored {x}, re-derived {y}")
    same = [("metrics.n_eval", s.n_eval, n.n_eval),
            ("coreset.size", stored.coreset.size, new.coreset.size),
            ("training.steps", stored.training.steps if stored.training else None, new.training.steps)]
    if exact:
        same += [("coreset.class_histogram", stored.coreset.class_histogram, new.coreset.class_histogram),
                 ("kept indices", _bytes(stored_path, stored), _bytes(new_path, new))]
        if stored.inputs is not None:
            same.append(("inputs", stored.inputs, new.inputs))
    for where, x, y in same:
        if x != y:
            shown = "differ" if where in ("kept indices", "inputs") else f"stored {x}, re-derived {y}"
            out.append(f"{where}: {shown}")
    return out


def _bytes(path: Path, record: Record) -> bytes | None:
    try:
        return Path(path).with_name(record.coreset.indices_file).read_bytes()
    except OSError:
        return None
