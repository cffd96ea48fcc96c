"""The dataset registry: every dataset as in-memory float tensors in [0, 1], NCHW.

Each entry carries what the rest of the suite needs to treat it correctly: classes, input
shape, mean/std (used inside the model, so attacks work in [0, 1]), the default L∞ attack ε
and the augmentations that make sense for it. The torchvision datasets read real files from a
local root (`download: true` is an opt-in for users with internet); digits ships with
scikit-learn, synthetic is generated, npz is the user's own arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, StrictInt

from corebench.core.errors import DataError, invalid
from corebench.core.spec import spec

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    """What the suite must know about a dataset to train and attack on it."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eps: float  # default L∞ attack radius in [0, 1] pixel units
    augment: tuple[str, ...] = ("crop", "flip")  # random crop (pad 4) and horizontal flip
    crop_padding: int = 4
    classes: tuple[str, ...] = ()
    source: str = ""  # where the arrays came from, for the record's provenance
    notes: tuple[str, ...] = ()  # caveats every board built on this data must state


@dataclass
class Dataset:
    """Train and test splits as float32 [N, C, H, W] in [0, 1] and int64 labels, and for
    datasets that hold one, a validation split (other train images, for choosing
    hyperparameters without looking at the test images)."""

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.x_val is None) != (self.y_val is None):
            raise DataError(f"dataset {self.info.name}: x_val and y_val come together")
        for name in ("x_train", "x_test") + (("x_val",) if self.x_val is not None else ()):
            x = getattr(self, name)
            if x.ndim != 4 or tuple(x.shape[1:]) != self.info.input_shape:
                raise DataError(f"dataset {self.info.name}: {name} has shape {tuple(x.shape)}, expected [N, {self.info.input_shape}]")
            y = getattr(self, "y" + name[1:])
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise DataError(f"dataset {self.info.name}: {'y' + name[1:]} has shape {tuple(y.shape)}, expected [{x.shape[0]}]")
        self._fingerprints: dict[tuple, str] = {}

    def fingerprint(self, part: str = "all") -> str:
        """A hash of the full contents: `train` (what a scoring run sees), `test`, `val`, or
        `all` (every split, plus the dataset's info). Every byte of every array counts, so replacing one
        image changes it; computed once (blake2b, about 1 GB/s)."""
        arrays = (self.x_train, self.y_train, self.x_test, self.y_test, self.x_val, self.y_val)
        memo = (part, *map(id, arrays))  # a split swapped for another tensor is hashed anew
        if memo not in self._fingerprints:
            if part == "all":
                digest = hashlib.blake2b(digest_size=16)
                val = (self.fingerprint("val"),) if self.x_val is not None else ()  # absent: the hash it had before x_val existed
                for piece in (self.fingerprint("train"), self.fingerprint("test"), *val, repr(self.info)):
                    digest.update(piece.encode())
            else:
                digest = hashlib.blake2b(digest_size=16)
                for t in (getattr(self, f"x_{part}"), getattr(self, f"y_{part}")):
                    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
                    digest.update(memoryview(t.detach().cpu().contiguous().numpy()).cast("B"))
            self._fingerprints[memo] = digest.hexdigest()
        return self._fingerprints[memo]
def hwc_to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255.0)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def split_train_test(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """A fixed stratified train/test split (seeded, so every run sees the same split)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


# --------------------------------------------------------------------------- train / validation / test splits


@spec
class SplitOptions:
    """Which images of a dataset's own train/test split are used, by fixed rules (`three_splits`).
    The defaults keep everything: the whole train and test splits, no validation split."""

    n_train: Annotated[StrictInt, Field(ge=1)] | None = None  # the training pool; None: all but validation
    n_val: Annotated[StrictInt, Field(ge=0)] = 0  # validation images, from the END of the train split
    n_test: Annotated[StrictInt, Field(ge=1)] | None = None  # evaluation images; None: the whole test split
    evaluate_on: Literal["test", "validation"] = "test"  # validation: for choosing hyperparameters

    def cuts(self) -> bool:
        return self != SplitOptions()


VALIDATION_NOTE = ("Evaluated on the VALIDATION split (other train images), not the test set: a run for "
                   "choosing hyperparameters, not a result.")  # fmt: skip


def round_robin(y: np.ndarray) -> np.ndarray:
    """The order that puts image k of class c at row K·k + c, each class in its given order: then
    every prefix of K·k rows is class-balanced, and a smaller prefix lies inside a larger one."""
    rank = np.zeros_like(y)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rank[members] = np.arange(members.size)
    return np.lexsort((y, rank))


def three_splits(info: DatasetInfo, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 opts: SplitOptions, where: str) -> Dataset:
    """A Dataset of three disjoint, class-balanced splits cut by fixed rules from uint8 HWC
    arrays whose rows are round-robin over the classes (`round_robin`):
    - the training pool: the first `n_train` rows of the TRAIN split;
    - validation: the last `n_val` rows of the TRAIN split (disjoint from any pool up to N − n_val);
    - evaluation: the first `n_test` rows of the TEST split, never used to choose anything.
    `evaluate_on: validation` puts the validation images in the test slot, so a grid that chooses
    hyperparameters runs as any grid does, and its boards say it is not a result."""
    k = info.num_classes
    (x_tr, y_tr), (x_te, y_te) = train, test
    n_train = y_tr.size - opts.n_val if opts.n_train is None else opts.n_train
    n_test = y_te.size if opts.n_test is None else opts.n_test
    for key, value in (("n_train", opts.n_train), ("n_val", opts.n_val), ("n_test", opts.n_test)):
        if value is not None and value % k:
            raise invalid(f"{where}.options.{key}", value, f"a multiple of {k} (one image per class per {k})")
    if n_train + opts.n_val > y_tr.size or n_train < k:
        raise invalid(f"{where}.options", {"n_train": opts.n_train, "n_val": opts.n_val},
                      f"n_train + n_val at most the {y_tr.size} images of the train split, n_train at least {k}")
    if n_test > y_te.size:
        raise invalid(f"{where}.options.n_test", n_test, f"at most the {y_te.size} images of the test split")
    if opts.evaluate_on == "validation" and not opts.n_val:
        raise invalid(f"{where}.options.n_val", 0, "at least one image per class with evaluate_on: validation")
    val = slice(y_tr.size - opts.n_val, y_tr.size)
    x_val, y_val = hwc_to_tensor(x_tr[val]), torch.from_numpy(y_tr[val])
    x_test, y_test = hwc_to_tensor(x_te[:n_test]), torch.from_numpy(y_te[:n_test])
    if opts.evaluate_on == "validation":
        x_test, y_test = x_val, y_val
        info = dataclasses.replace(info, notes=(*info.notes, VALIDATION_NOTE))
    has_val = opts.n_val > 0
    return Dataset(info, hwc_to_tensor(x_tr[:n_train]), torch.from_numpy(y_tr[:n_train]), x_test, y_test,
                   x_val if has_val else None, y_val if has_val else None)  # fmt: skip


def host_to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor moved to `device` without making the host wait for the device: on CUDA it is
    pinned and copied asynchronously (ordered before later work on the stream); elsewhere `.to`."""
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def augment_batch(x: torch.Tensor, info: DatasetInfo, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding) and horizontal flip on a batch, on its own device, in one
    gather for the whole batch (float images or uint8 pixels alike). The draws come from
    `generator` (a CPU generator) in a fixed order, so a seed gives the same crops and flips on
    every device."""
    if "flip" in info.augment:
        flip = host_to_device(torch.rand(x.shape[0], generator=generator, device="cpu"), x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if "crop" in info.augment and info.crop_padding > 0:
        p = info.crop_padding
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dx = host_to_device(torch.randint(0, 2 * p + 1, (n,), generator=generator), x.device)
        dy = host_to_device(torch.randint(0, 2 * p + 1, (n,), generator=generator), x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # [n, h]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # [n, w]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    return x
