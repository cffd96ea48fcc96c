"""The results store: one JSON record per cell, written atomically, read back validated.

A record (docs/RESULTS.md) is the only thing a leaderboard is built from, so it is checked on
the way in and on the way out:

- `write_record` serialises first (sorted keys, `allow_nan=False`), then writes a temp file in
  the same folder and `os.replace`s it, so a crash or an unserialisable value never leaves a
  half-written or stale-looking record behind.
- `read_record` parses it once, from the file's bytes, into the `Record` model
  (`corebench.store.record`), and names the file and the field in its error, because a malformed
  record found among 10,000 is only fixable if the message says which and why. Everything that
  reads records reads the model's attributes: a field is spelled in one place.
- `scan`/`load` skip malformed files by default (reporting each) so one bad file does not hide
  a whole board; `strict=True` turns the first problem into a `ResultsError`.

`load` gives every row its evaluation protocol (`corebench.core.protocol`); the leaderboards never
put two protocols in one table.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from corebench.core.errors import ResultsError
from corebench.core.files import write_atomic, write_bytes_atomic  # noqa: F401  (the store's writers)
from corebench.core.protocol import Protocol
from corebench.core.spec import METRICS, record_relpath, record_relstr, to_jsonable
from corebench.store.record import Record, parse_record

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Columns of `load()`, in order. Cell key first, then outcome, metrics, protocol, provenance.
KEY_COLUMNS = ("dataset", "arch", "scoring_arch", "regime", "method", "method_label", "fraction", "seed")
METRIC_COLUMNS = (*METRICS, "n_eval")
PROTOCOL_COLUMNS = (
    "norm",
    "eps",
    "autoattack_enabled",
    "autoattack_version",
    "autoattack_attacks",
    "n_examples",
    "pgd_steps",
)
TIMING_COLUMNS = ("scoring_s", "selection_s", "train_s", "eval_s", "total_s")
COLUMNS = (
    ("grid",)
    + KEY_COLUMNS
    + ("status", "error")
    + METRIC_COLUMNS
    + PROTOCOL_COLUMNS
    + ("protocol", "grid_source", "cell_id")
    + TIMING_COLUMNS
    + ("device", "git_commit", "path")
)


# --------------------------------------------------------------------------- writing


def write_record(path: Path, record: Record | dict, *, root: str | Path | None = None) -> None:
    """Write one record atomically: serialise, write a temp file beside it, `os.replace`.

    A `Record` is written as its JSON form (`model_dump(mode="json")`), sorted keys, one space
    of indent; a dict (tests' hand-made records) as it is. Serialising before touching the disk
    means a NaN accuracy or an odd object raises `ResultsError` and leaves neither the record
    nor a temp file.
    """
    path = Path(path)
    try:
        plain = record.model_dump(mode="json") if isinstance(record, Record) else to_jsonable(record)
        text = json.dumps(plain, sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: record cannot be written as JSON ({exc})") from None
    write_atomic(path, lambda f: f.write((text + "\n").encode()), root=root)


def write_indices(path: Path, indices: np.ndarray, *, root: str | Path | None = None) -> None:
    """Save the kept indices atomically as a sorted int64 `.npy` (no pickling)."""
    path = Path(path)
    arr = np.asarray(indices)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ResultsError(f"{path}: indices must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    arr = np.sort(arr.astype(np.int64))
    write_atomic(path, lambda f: np.save(f, arr, allow_pickle=False), root=root)


# --------------------------------------------------------------------------- reading


_INDICES_HEADER = re.compile(rb"\{'descr': '<i8', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def read_indices(path: str | Path) -> np.ndarray | None:
    """Kept indices as `write_indices` saved them (sorted int64), or None if unreadable.

    Boards read thousands of these; parsing the `.npy` header of our own files directly is
    ~10× faster than `np.load`, which is the fallback for any other valid layout.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        match = _INDICES_HEADER.fullmatch(data[10:end])
        if match and len(data) == end + 8 * int(match.group(1)):
            return np.frombuffer(data, dtype="<i8", offset=end)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return arr if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer) else None



class Stored(NamedTuple):
    """A record as the store holds it: the file it was read from, the typed record, and its
    evaluation protocol.

    A pair of path and `Record` rather than a path attribute on the record: a `Record` is the
    file's content (the runner builds one before any file exists, and equal records at two paths
    are two cells), so where it was found stays beside it, not in it. The protocol is worked out
    once here, when the record is read, because grouping, the duplicate check and every board
    need it."""

    path: Path
    record: Record
    protocol: Protocol


def read_record(path: Path) -> Record:
    """Parse and validate one record (one pydantic parse of the file's bytes);
    `ResultsError("<path>: <what is wrong>")` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read ({exc})") from None
    try:
        return parse_record(data)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: cannot be read ({exc})") from None


DONE, STALE, FAILED, MISSING, MALFORMED = "done", "stale", "failed", "missing", "malformed"


def record_state(path: Path, cell_id: str | None = None) -> str:
    """What the record at `path` says about its cell: `done` (finished, and made by the cell
    whose id is `cell_id`), `stale` (finished, but by other settings or data: it must be
    rerun), `failed`, `missing` or `malformed` (unreadable, invalid, or a key that does not
    match its path)."""
    path = Path(path)
    if not path.exists():
        return MISSING
    try:
        record = read_record(path)
    except ResultsError:
        return MALFORMED
    if not path_matches_key(path, record):
        return MALFORMED
    if record.status != "ok":
        return FAILED
    return DONE if cell_id is None or record.cell_id == cell_id else STALE


def is_done(path: Path, cell_id: str | None = None) -> bool:
    """True for a valid, finished record made for `cell_id`; failed, stale or malformed cells are rerun."""
    return record_state(path, cell_id) == DONE


def path_matches_key(path: str | Path, record: Record) -> bool:
    """A record lives where its grid name and cell key say (`spec.record_relpath`), under any root
    (`.`, `""` and other relative roots included: the comparison is of whole path parts)."""
    want = record_relstr(record.grid.name, record.cell).split("/")
    parts = os.fspath(path).replace(os.sep, "/").split("/")
    return parts[-len(want):] == want


def scan(results_dir: Path) -> tuple[list[Stored], list[tuple[Path, str]]]:
    """Every `*.json` record under `results_dir`, in sorted path order (that of `Path`s: part by part).

    Returns the valid records as `Stored` (path, `Record`, protocol), and the problems as
    `(path, reason)` with the reason not repeating the path. A record whose path does not
    spell its grid and cell is a problem; two records of one cell (same grid, key and
    evaluation protocol, under different sub-folders) are a `ResultsError` naming both, since
    picking either would be a guess.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"{results_dir}: no such results directory")
    records: list[Stored] = []
    problems: list[tuple[Path, str]] = []
    with gc_paused():
        for name in _json_files(os.fspath(results_dir)):
            _read_into(name, records, problems)
    refuse_duplicates(records)
    return records, problems


def _json_files(root: str) -> list[str]:
    """The `*.json` files under `root` (following no link to a folder, as `Path.rglob`), sorted
    as `Path`s sort: by their parts, so `a/x` comes before `a-b/x`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, f) for f in files if f.endswith(".json")]
    return sorted(found, key=lambda p: p.split(os.sep))


def refuse_duplicates(records: list[Stored]) -> None:
    """`ResultsError` naming both files when two records have one grid, cell key and protocol."""
    seen: dict[tuple, Path] = {}
    for path, rec, protocol in records:
        cell = rec.cell
        key = (rec.grid.name, cell.dataset, cell.arch, cell.scoring_arch, cell.regime, cell.method,
               cell.method_label, cell.fraction, cell.seed, protocol.key)  # fmt: skip
        first = seen.setdefault(key, path)
        if first is not path:
            raise ResultsError(f"{path}: a second record of the cell in {first} (same grid, cell and "
                               "evaluation protocol); keep one of the two files")


def _read_into(name: str, records: list[Stored], problems: list[tuple[Path, str]]) -> None:
    if not os.path.isfile(name):
        return
    path = Path(name)
    try:
        record = read_record(path)
        if not path_matches_key(name, record):
            expected = record_relpath(record.grid.name, record.cell).as_posix()
            raise ResultsError(f"{path}: its grid and cell belong at .../{expected}; a moved, copied or "
                               "renamed record is not read (move it back or delete it)")
    except ResultsError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        log.warning("skipping %s: %s", path, reason)
        problems.append((path, reason))
        return
    records.append(stored(path, record))


def stored(path: str | Path, record: Record) -> Stored:
    """`record` as found at `path`, with its protocol (what `scan` yields for each record)."""
    return Stored(path if isinstance(path, Path) else Path(path), record, Protocol.of(record.config.evaluation))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause automatic garbage collection while building many long-lived objects.

    Parsing 10,000 records makes millions of containers; each automatic full collection
    walks them all, which more than doubles the parse time. JSON builds no reference cycles,
    so nothing is lost by waiting until the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(results_dir: str | Path, *, strict: bool = False) -> pd.DataFrame:
    """All records under `results_dir` as a DataFrame, one row per cell and evaluation ε
    (columns: `COLUMNS`; `eps` is the row's ε, `protocol` names every ε the cell was attacked at).

    Malformed files are skipped with a warning; `strict=True` raises `ResultsError` naming the
    first one instead.
    """
    records, problems = scan(Path(results_dir))
    if strict and problems:
        path, reason = problems[0]
        raise ResultsError(f"{path}: {reason}")
    return frame(records)


def frame(records: list[Stored]) -> pd.DataFrame:
    """Records (as returned by `scan`) flattened into the `load()` DataFrame."""
    import pandas as pd  # here, not at import: the runner and `corebench select` never need it (~1 s)

    rows = [row for stored in records for row in flatten(stored)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        return df
    for col in ("fraction", "eps", *METRIC_COLUMNS[:3], *TIMING_COLUMNS):
        df[col] = df[col].astype(float)
    for col in ("seed", "n_examples", "pgd_steps"):
        df[col] = df[col].astype(np.int64)
    df["n_eval"] = df["n_eval"].astype("Int64")  # missing (NA) for failed cells
    df["autoattack_enabled"] = df["autoattack_enabled"].astype(bool)
    return df


def flatten(stored: Stored) -> list[dict[str, Any]]:
    """One stored record as `load()` rows: one per evaluation ε (dicts with the keys of `COLUMNS`)."""
    path, record, proto = stored
    cell, metrics, timings = record.cell, record.metrics, record.timings
    row: dict[str, Any] = {"grid": record.grid.name}
    row.update({k: getattr(cell, k) for k in KEY_COLUMNS})
    row["status"] = record.status
    row["error"] = record.error
    row["clean_acc"] = metrics.clean_acc if metrics else None
    row["n_eval"] = metrics.n_eval if metrics else None
    row.update(proto.as_row())
    row["protocol"] = proto.key
    row["grid_source"] = record.grid.source or ""
    row["cell_id"] = record.cell_id
    for k in TIMING_COLUMNS:
        row[k] = timings.get(k)
    row["device"] = record.device
    row["git_commit"] = record.versions.get("git_commit")
    row["path"] = str(path)
    robust = robust_by_eps(record, proto)
    return [{**row, "eps": eps, "pgd_acc": robust[eps][0], "autoattack_acc": robust[eps][1]} for eps in proto.eps]


def robust_by_eps(record: Record, protocol: Protocol | None = None) -> dict[float, tuple[float | None, float | None]]:
    """ε -> (PGD-k accuracy, AutoAttack accuracy) of a record; None where not measured or failed.

    A record attacked at several ε lists them in `metrics.robust`; one attacked at a single ε
    (schema 1) keeps them at the top of `metrics`. `protocol`: the record's, when known.
    """
    eps_list = (protocol or Protocol.of(record.config.evaluation)).eps
    metrics = record.metrics if record.status == "ok" else None
    if metrics is None:
        return {eps: (None, None) for eps in eps_list}
    if not metrics.robust:
        return {eps_list[-1]: (metrics.pgd_acc, metrics.autoattack_acc)}
    return {float(e.eps): (e.pgd_acc, e.autoattack_acc) for e in metrics.robust}
