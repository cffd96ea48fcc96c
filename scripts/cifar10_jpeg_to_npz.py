"""The public JPEG copy of CIFAR-10 (../shared/data/cifar10_jpeg.npz) cut to a prefix, or decoded.

Two jobs of the GPU run (scripts/gpu_pack.sh, scripts/gpu_run.sh), on the layout that file's
README describes (`train_jpeg`, `train_offsets`, `train_y`, `train_class_rank`, the same for
`test`, and `classes`; rows round-robin over the classes, so a prefix of 10·k rows is
class-balanced):

    --keep-jpeg: the first --train / --test rows in the same layout (what travels: JPEG bytes
                 are a third of the decoded pixels);
    default:     the first rows decoded (PIL, RGB, as the README decodes) into the plain npz
                 that corebench's `npz` dataset reads: x_train, y_train, x_test, y_test (uint8
                 N×32×32×3, int64 labels).

    python scripts/cifar10_jpeg_to_npz.py SRC OUT [--train N] [--test N] [--keep-jpeg] [--workers K]
"""

from __future__ import annotations

import argparse
import io
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SPLITS = ("train", "test")


def read(src: Path, limits: dict[str, int | None]) -> dict[str, np.ndarray]:
    """The first `limits[split]` rows of each split (all of them for None), in the file's layout."""
    out = {}
    with np.load(src, allow_pickle=False) as f:
        missing = {f"{s}_{k}" for s in SPLITS for k in ("jpeg", "offsets", "y", "class_rank")} - set(f.files)
        if missing:
            raise SystemExit(f"cifar10_jpeg_to_npz: {src} lacks {sorted(missing)}; allowed: the layout of "
                             "cifar10_jpeg.npz (its README)")
        out["classes"] = f["classes"] if "classes" in f.files else np.array([], dtype=str)
        for s in SPLITS:
            offsets = f[f"{s}_offsets"]
            n = len(offsets) - 1 if limits[s] is None else limits[s]
            if not 0 < n <= len(offsets) - 1:
                raise SystemExit(f"cifar10_jpeg_to_npz: --{s} {n} is not allowed; allowed: 1 to {len(offsets) - 1}")
            out[f"{s}_offsets"] = offsets[: n + 1]
            out[f"{s}_jpeg"] = f[f"{s}_jpeg"][: offsets[n]]
            out[f"{s}_y"] = f[f"{s}_y"][:n]
            out[f"{s}_class_rank"] = f[f"{s}_class_rank"][:n]
    return out


def _decode_chunk(blobs: list[bytes]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8) for b in blobs])


def decode(arrays: dict[str, np.ndarray], split: str, workers: int = 1) -> np.ndarray:
    """The split's images as uint8 N×32×32×3, decoded in `workers` processes."""
    data, offsets = arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"]
    blobs = [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
    if workers <= 1:
        return _decode_chunk(blobs)
    size = -(-len(blobs) // (4 * workers))
    chunks = [blobs[i:i + size] for i in range(0, len(blobs), size)]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_decode_chunk, chunks)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=None, help="the first N train rows (default: all)")
    parser.add_argument("--test", type=int, default=None, help="the first N test rows (default: all)")
    parser.add_argument("--keep-jpeg", action="store_true", help="write the rows in the JPEG layout, not decoded")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes")
    args = parser.parse_args(argv)
    if not args.src.is_file():
        print(f"cifar10_jpeg_to_npz: SRC {str(args.src)!r} is not allowed; allowed: an existing .npz file", file=sys.stderr)
        return 2
    arrays = read(args.src, {"train": args.train, "test": args.test})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    if args.keep_jpeg:
        np.savez(tmp, **arrays)
    else:
        np.savez(tmp, x_train=decode(arrays, "train", args.workers), y_train=arrays["train_y"].astype(np.int64),
                 x_test=decode(arrays, "test", args.workers), y_test=arrays["test_y"].astype(np.int64))
    tmp.replace(args.out)  # whole or not at all
    n = {s: len(arrays[f"{s}_y"]) for s in SPLITS}
    print(f"{args.out}: {n['train']} train and {n['test']} test images "
          f"({'JPEG bytes' if args.keep_jpeg else 'decoded uint8'}, {args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
