"""Published scoring runs: the scoring runs a committed board's rows were selected from, shipped
beside its records, so a method added to that board is scored from exactly those runs.

`corebench publish-scoring GRID` (`corebench.drivers.publish`) writes them into
`<results>/<grid>/scoring/`; `run`, `plan` and Slurm read them before the cache
(`scoring_runs.ScoringCache`). The folder holds one `<key>.npz` per run, named by the scoring cache's
key (`scoring.scoring_key`: data content, architecture, scoring settings, seed, threads,
execution; never where the data's files live), and `runs.jsonl`, one line per run: the key,
the file, its checksum (`cache_entry.checksum`, as the cache's) and size, the signals, the epochs
trained, the seconds the run took, and what made it (dataset entry without its location, data
content hash, architecture, scoring settings, seed, threads, execution, device, corebench's
version and commit). The index is `.jsonl`, not `.json`: the record store reads every `*.json`
under the results folder.

What is stored is what the grid's methods read: for each run, the union of its methods'
signals, cut to the epochs they read (`signals.until`), in the dtype the scoring run records
(`signals`: float16 logits, bool correctness, float32 otherwise; anything smaller would change
the selections), compressed. A published file that fails its checksum is an error, never
silently remade: it is committed, so `git checkout` restores it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corebench.core.errors import ConfigError, DataError
from corebench.core.files import confined, inside, write_atomic
from corebench.core.spec import slug, to_jsonable
from corebench.signals import companions, get_signal, list_signals, until
from corebench.store.cache_entry import checksum

FOLDER = "scoring"  # under <results>/<grid>/
INDEX = "runs.jsonl"
LIMIT_MB = 10.0  # per board (issue 20): the repository travels to a GPU machine under 64 MiB


def folder_for(results_dir: str | Path, grid_name: str) -> Path:
    """Where a grid's published scoring runs live: `<results>/<grid>/scoring/`."""
    return Path(results_dir) / slug(grid_name) / FOLDER


@dataclass(frozen=True)
class PublishedRun:
    """One line of `runs.jsonl`."""

    key: str
    file: str
    checksum: str
    bytes: int
    signals: tuple[str, ...]
    trained_epochs: int
    seconds: float
    made_by: dict[str, Any]


class Published:
    """The published runs of one folder (none when it does not exist), read once."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.runs: dict[str, PublishedRun] = {}
        index = folder / INDEX if folder is not None else None
        if index is None or not index.is_file():
            return
        for number, line in enumerate(index.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                run = PublishedRun(row["key"], row["file"], row["checksum"], int(row["bytes"]), tuple(row["signals"]),
                                   int(row["trained_epochs"]), float(row["seconds"]), dict(row.get("made_by") or {}))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{index}: line {number} is not a published scoring run ({type(exc).__name__}: {exc}); "
                                f"restore the file with git checkout") from None
            self.runs[run.key] = run

    def __bool__(self) -> bool:
        return bool(self.runs)

    def holds(self, key: str, signals: set[str], epochs: int) -> set[str]:
        """Which of `signals` the published run `key` holds for at least `epochs` epochs."""
        run = self.runs.get(key)
        if run is None or run.trained_epochs < epochs:
            return set()
        return signals & set(run.signals)

    def read(self, key: str, signals: set[str], epochs: int, n: int) -> tuple[dict[str, np.ndarray], PublishedRun]:
        """The run's `signals` (and their companions) cut to `epochs`; checked against its
        checksum and the data's `n` samples (a one-line DataError otherwise)."""
        run = self.runs[key]
        path = confined(self.folder, run.file)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise DataError(f"published scoring run {path}: cannot be read ({exc.strerror}); "
                            f"restore it with git checkout") from None
        if checksum(blob) != run.checksum:
            raise DataError(f"published scoring run {path}: fails its checksum in {INDEX}; restore it with git checkout")
        with np.load(io.BytesIO(blob), allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files if name in signals | companions(signals)}
        for name, arr in arrays.items():
            if name in list_signals() and arr.shape[get_signal(name).shape.index("N")] != n:
                raise DataError(f"published scoring run {path}: signal {name} has shape {arr.shape}, "
                                f"not {n} samples")
        return until(arrays, epochs), run


def write_published(folder: Path, root: Path,
                    runs: list[tuple[dict[str, np.ndarray], dict[str, Any], bytes | None]],
                    limit_mb: float = LIMIT_MB) -> int:
    """Write `runs` ((arrays, row without file/checksum/bytes, the file's bytes when it is already
    published and kept as it is) each) and their index into `folder` (inside `root`), remove
    published files no run names any more; the bytes written. Over `limit_mb` compressed,
    nothing is written (a one-line ConfigError)."""
    blobs = []
    for arrays, _, blob in runs:
        if blob is None:  # a new file (a kept one keeps its bytes: npz entries carry a timestamp)
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            blob = buf.getvalue()
        blobs.append(blob)
    total = sum(len(b) for b in blobs)
    if total > limit_mb * 2**20:
        raise ConfigError(f"publish-scoring: the runs take {total / 2**20:.1f} MB compressed, over the limit of "
                          f"{limit_mb:g} MB per board (limit_mb); nothing was written")
    rows = []
    for (arrays, row, _), blob in zip(runs, blobs, strict=True):
        name = f"{row['key']}.npz"
        write_atomic(inside(root, folder / name), lambda f, b=blob: f.write(b), root=root)
        rows.append({**to_jsonable(row), "file": name, "checksum": checksum(blob), "bytes": len(blob),
                     "signals": sorted(k for k in arrays if k in list_signals())})
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(rows, key=lambda r: r["key"]))
    write_atomic(inside(root, folder / INDEX), lambda f: f.write(text.encode()), root=root)
    kept = {r["file"] for r in rows}
    for old in folder.glob("*.npz"):
        if old.name not in kept:
            inside(root, old).unlink()
    return total
