"""The scoring cache's file format, written and read in this one place.

An entry is `<key>.npz` (the run's per-sample signals) beside `<key>.json` (its metadata: what
made it, the epochs it trained, the seconds it took, and a checksum of the npz). The npz is
written first and the metadata last, so an entry counts only once its metadata names the npz's
checksum: a crashed job never leaves a half entry that is read. Torch-free, because the store's
tamper check (`inputs`) reads entries as well as the scoring run (`compute.scoring`) and the
runner's plan of work.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from corebench.core.files import write_atomic
from corebench.core.spec import to_jsonable


def checksum(blob: bytes | memoryview) -> str:
    """A 128-bit BLAKE2b digest in hex: the npz's, in its metadata (published runs use it too)."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def meta_file(npz: Path) -> Path:
    """The metadata file beside an entry's npz."""
    return npz.with_suffix(".json")


def write_entry(npz: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], root: Path) -> None:
    """Write one entry atomically, the npz first (see the module doc); `meta` gains `checksum`."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getbuffer()
    write_atomic(npz, lambda f: f.write(blob), root=root)
    text = json.dumps(to_jsonable({**meta, "checksum": checksum(blob)}), indent=1, sort_keys=True)
    write_atomic(meta_file(npz), lambda f: f.write(text.encode()), root=root)


def read_meta(npz: Path) -> dict[str, Any]:
    """An entry's metadata (OSError when missing, ValueError when it is not a JSON object)."""
    meta = json.loads(meta_file(npz).read_text())
    if not isinstance(meta, dict):
        raise ValueError("its metadata is not a JSON object")
    return meta


def read_checked(npz: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """An entry's arrays and metadata, checked: the metadata names `key` and the npz matches its
    checksum (ValueError otherwise, OSError when a file is missing)."""
    meta = read_meta(npz)
    blob = npz.read_bytes()
    if meta.get("key") != key:
        raise ValueError("its metadata names another key")
    if meta.get("checksum") != checksum(blob):
        raise ValueError("checksum mismatch")
    return read_arrays(io.BytesIO(blob)), meta


def read_arrays(source: Path | io.BytesIO, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The npz's arrays (only `names`, those it has, when given); no pickles."""
    with np.load(source, allow_pickle=False) as f:
        wanted = f.files if names is None else [k for k in names if k in f.files]
        return {k: f[k] for k in wanted}


def signal_names(npz: Path) -> set[str]:
    """The names of the signals an entry's npz holds (without reading them)."""
    with np.load(npz, allow_pickle=False) as f:
        return set(f.files)


def remove_entry(npz: Path) -> None:
    """Remove an entry, metadata first, so a reader never finds the metadata without its npz."""
    meta_file(npz).unlink(missing_ok=True)
    npz.unlink(missing_ok=True)
