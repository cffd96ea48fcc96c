"""What fed a record, bound by checksums: a record can show that its files were not swapped.

A finished record carries `inputs` (issue 23):

- `indices`: the digest of its kept-indices file (`seedS.indices.npy` beside it);
- `scoring_runs`: for each scoring run its selection read, the run's cache key, the epochs of
  the run the method was served (`signals.until`), and the digest of every array served.

The data itself is bound by the cell id (its content hash, `Dataset.fingerprint`, is part of the
cell's settings). `changed_inputs` recomputes the digests from the files now on disk: a
replaced indices file, or cache signals edited with their own checksum recomputed, no longer
match the record that was derived from them. Digests of served arrays (not of the cache file)
stay valid when a cache entry is remade with more signals or epochs: the first epochs of a
scoring run are the same bit for bit whatever else it records (tests/test_scoring_runs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from corebench.signals import until
from corebench.store.cache_entry import checksum, read_arrays
from corebench.store.record import BoundRun, Record
from corebench.store.results import Stored

SCORING = "scoring"  # the cache's sub-folder of scoring runs (work.plan_work: cache / "scoring")


digest = checksum  # a 128-bit BLAKE2b digest in hex, the scoring cache's checksum function


def array_digest(arr: np.ndarray) -> str:
    """A digest of an array's dtype, shape and bytes (so a reshaped or recast array differs)."""
    arr = np.ascontiguousarray(arr)
    return digest(f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes())


def served_digests(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """The digest of each signal array a method was served."""
    return {name: array_digest(np.asarray(a)) for name, a in sorted(arrays.items())}


def file_digest(path: Path) -> str | None:
    """The digest of a file's bytes; None when it cannot be read."""
    try:
        return digest(Path(path).read_bytes())
    except OSError:
        return None


def changed_inputs(record: Record, path: Path, cache_dir: Path | None = None) -> list[str]:
    """What no longer matches the record's `inputs` (empty when all match, or it has none).

    The indices file is checked always; the scoring runs only when `cache_dir` is given and
    still holds the run (an entry removed from the cache cannot be checked, and is no change).
    """
    inputs = record.inputs
    if inputs is None or record.status != "ok":
        return []
    problems = []
    coreset = record.coreset
    if coreset is not None and coreset.indices_file and inputs.indices:
        index_file = Path(path).with_name(coreset.indices_file)
        now = file_digest(index_file)
        if now != inputs.indices:
            problems.append(f"its kept indices {index_file.name} were {'removed' if now is None else 'changed'} "
                            "after the record was written")
    if cache_dir is not None:
        for run in inputs.scoring_runs:
            why = _run_changed(run, Path(cache_dir) / SCORING / f"{run.key}.npz")
            if why:
                problems.append(why)
    return problems


def unserved(arrays: Mapping[str, np.ndarray], run: BoundRun) -> list[str]:
    """The signals `run` bound that `arrays`, cut to the epochs it was served, do not serve
    bit for bit (sorted; empty when a copy of the run serves exactly what the record read)."""
    served = served_digests(until({k: arrays[k] for k in run.signals if k in arrays}, int(run.epochs)))
    return sorted(k for k, d in run.signals.items() if served.get(k) != d)


def _run_changed(run: BoundRun, npz: Path) -> str:
    """Why the cached scoring run no longer serves what the record was selected from ('' if it does)."""

    if not npz.is_file():
        return ""
    try:
        arrays = read_arrays(npz, run.signals)
    except (OSError, ValueError, KeyError):
        return f"scoring run {run.key}: its cache entry cannot be read"
    if set(arrays) != set(run.signals):
        return ""  # remade without these signals: nothing to compare
    changed = unserved(arrays, run)
    if changed:
        return (f"scoring run {run.key}: signal {changed[0]} in the cache differs from the one the coreset "
                "was selected from")
    return ""


def unchanged(records: list[Stored], problems: list[tuple[Path, str]], cache_dir: Path | None = None
              ) -> tuple[list[Stored], list[tuple[Path, str]]]:
    """`results.scan`'s records less those whose inputs changed, which join the problems with
    what changed (a board never ranks a record whose files were swapped)."""
    kept, problems = [], list(problems)
    for stored in records:
        changed = changed_inputs(stored.record, stored.path, cache_dir)
        if changed:
            problems.append((stored.path, "inputs changed: " + "; ".join(changed)))
        else:
            kept.append(stored)
    return kept, problems
