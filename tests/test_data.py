"""The dataset registry: shipped, generated, npz and real torchvision files, and augmentation.

The torchvision loaders are exercised for real: the tests write small files in the exact
on-disk formats torchvision reads (CIFAR pickles, SVHN .mat) and point its md5 tables at them.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data_file
from sklearn.linear_model import LogisticRegression

from corebench.compute.data import CIFAR10_CLASSES, DatasetInfo, augment_batch
from corebench.compute.datasets import (
    JPEG_NOTE,
    PROXY_NOTE,
    list_datasets,
    load_dataset,
    make_synthetic,
)
from corebench.core.errors import BenchError, ConfigError, DataError
from corebench.core.spec import DatasetSpec


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset():
    assert set(list_datasets()) >= {"digits", "synthetic", "npz", "cifar10", "cifar100", "svhn"}
    assert list_datasets() == sorted(list_datasets())


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("cifar11"))
    msg = one_line(exc)
    assert "'cifar11'" in msg and "cifar10" in msg and "digits" in msg


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec("digits"))


def test_digits_shapes_range_and_labels(digits):
    info = digits.info
    assert info.input_shape == (1, 8, 8) and info.num_classes == 10
    assert info.eps == pytest.approx(32 / 255)
    assert len(info.classes) == 10 and len(info.mean) == len(info.std) == 1
    assert digits.x_train.shape == (1347, 1, 8, 8) and digits.x_test.shape == (450, 1, 8, 8)
    for x in (digits.x_train, digits.x_test):
        assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    for y in (digits.y_train, digits.y_test):
        assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    # stratified: every class holds about a quarter of its images in the test split
    counts_test = torch.bincount(digits.y_test, minlength=10).float()
    counts_all = counts_test + torch.bincount(digits.y_train, minlength=10)
    assert torch.allclose(counts_test / counts_all, torch.full((10,), 0.25), atol=0.01)
    # the 17 grey levels of the 0..16 source images survive exactly
    assert torch.equal(digits.x_train * 16, (digits.x_train * 16).round())


def test_digits_split_is_fixed(digits):
    again = load_dataset(DatasetSpec("digits"))
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)
    other = load_dataset(DatasetSpec("digits", options={"split_seed": 1}))
    assert not torch.equal(other.y_train, digits.y_train)


def test_dataset_options_are_validated():
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("digits", options={"test_fration": 0.2}))
    msg = one_line(exc)
    assert "datasets.digits.options.test_fration" in msg and "test_fraction" in msg and "split_seed" in msg
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("digits", options={"split_seed": "zero"}))
    assert "datasets.digits.options.split_seed" in one_line(exc) and "'zero'" in str(exc.value)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_flips_exactly_the_returned_indices():
    clean = make_synthetic(n_train=400, n_test=50, num_classes=3, flip_fraction=0.0, seed=3)
    noisy = make_synthetic(n_train=400, n_test=50, num_classes=3, flip_fraction=0.1, seed=3)
    flipped = noisy[4]
    assert clean[4].size == 0 and flipped.size == 40 and np.array_equal(flipped, np.unique(flipped))
    np.testing.assert_array_equal(noisy[0], clean[0])  # same images
    changed = np.flatnonzero(noisy[1] != clean[1])
    np.testing.assert_array_equal(changed, flipped)  # every flip moves to another class
    assert noisy[1].min() >= 0 and noisy[1].max() < 3


def test_synthetic_far_samples_are_linearly_easier():
    x_tr, y_tr, x_te, y_te, flipped = make_synthetic(n_train=600, n_test=600, seed=0)
    clf = LogisticRegression(max_iter=2000).fit(x_tr.reshape(600, -1), y_tr)
    # the signal is margin·d_i·template on top of constant noise: |x - 0.5| orders by d_i
    strength = np.linalg.norm((x_te - 0.5).reshape(600, -1), axis=1)
    order = np.argsort(strength)
    right = clf.predict(x_te.reshape(600, -1)) == y_te
    near, far = right[order[:200]].mean(), right[order[-200:]].mean()
    assert far >= 0.98 and near <= far - 0.05, (near, far)
    # flipped labels are the hardest: the model mostly disagrees with them
    assert (clf.predict(x_tr[flipped].reshape(len(flipped), -1)) != y_tr[flipped]).mean() > 0.8


def test_synthetic_loader_applies_and_validates_options():
    data = load_dataset(DatasetSpec("synthetic", options={"n_train": 90, "n_test": 30, "num_classes": 3, "size": 6}))
    assert data.x_train.shape == (90, 1, 6, 6) and data.x_test.shape == (30, 1, 6, 6)
    assert data.info.num_classes == 3 and data.info.input_shape == (1, 6, 6) and data.info.augment == ()
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    expected = make_synthetic(n_train=90, n_test=30, num_classes=3, size=6)
    np.testing.assert_array_equal(data.y_train.numpy(), expected[1])

    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("synthetic", options={"n_samples": 10}))
    msg = one_line(exc)
    assert "datasets.synthetic.options.n_samples" in msg and "n_train" in msg and "flip_fraction" in msg
    for key, bad in (("num_classes", 1), ("flip_fraction", 1.5), ("n_train", 0), ("noise", -1.0)):
        with pytest.raises(ConfigError) as exc:
            load_dataset(DatasetSpec("synthetic", options={key: bad}))
        assert f"datasets.synthetic.options.{key}" in one_line(exc)


# --------------------------------------------------------------------------- npz


def write_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_uint8_hwc(tmp_path):
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    y_tr, y_te = np.arange(12) % 4, np.array([0, 1, 2, 3])
    path = write_npz(tmp_path / "d.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    data = load_dataset(DatasetSpec("npz", path=path, id="mine", options={"eps": "4/255", "augment": "flip"}))
    assert data.info.input_shape == (3, 5, 6) and data.info.num_classes == 4 and data.info.name == "mine"
    assert data.info.eps == pytest.approx(4 / 255) and data.info.augment == ("flip",)
    torch.testing.assert_close(data.x_train, torch.from_numpy(x_tr.transpose(0, 3, 1, 2) / 255.0).float())
    torch.testing.assert_close(data.x_test[2, 1], torch.from_numpy(x_te[2, :, :, 1] / 255.0).float())
    assert data.y_train.dtype == torch.int64 and data.y_train.tolist() == y_tr.tolist()
    mean = x_tr.reshape(-1, 3).mean(0) / 255
    assert data.info.mean == pytest.approx(tuple(mean), abs=1e-4)


def test_npz_float_chw_and_grayscale(tmp_path):
    rng = np.random.default_rng(1)
    x_tr = rng.random((10, 3, 4, 4)).astype(np.float32)
    path = write_npz(tmp_path / "chw.npz", x_train=x_tr, y_train=np.arange(10) % 2,
                     x_test=x_tr[:3], y_test=np.array([0, 1, 0]))
    data = load_dataset(DatasetSpec("npz", path=path))
    assert data.info.input_shape == (3, 4, 4) and data.info.augment == ("crop", "flip")
    assert torch.equal(data.x_train, torch.from_numpy(x_tr))

    gray = rng.random((6, 7, 7))  # [N, H, W] float64
    path = write_npz(tmp_path / "g.npz", x_train=gray, y_train=np.arange(6) % 3, x_test=gray[:2], y_test=np.array([0, 2]))
    data = load_dataset(DatasetSpec("npz", path=path, options={"augment": "none"}))
    assert data.x_train.shape == (6, 1, 7, 7) and data.x_train.dtype == torch.float32 and data.info.augment == ()


def npz_error(tmp_path: Path, options: dict | None = None, **arrays: np.ndarray) -> str:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BenchError) as exc:
        load_dataset(DatasetSpec("npz", path=path, options=options or {}))
    return one_line(exc)


GOOD = {"x_train": np.zeros((4, 3, 2, 2), np.float32), "y_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 3, 2, 2), np.float32), "y_test": np.array([0, 1])}


def test_npz_missing_arrays_are_named(tmp_path):
    msg = npz_error(tmp_path, x_train=GOOD["x_train"], y_train=GOOD["y_train"], x=GOOD["x_test"])
    assert "datasets.npz.path" in msg and "'x_test'" in msg and "'y_test'" in msg


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"x_train": np.full((4, 3, 2, 2), 1.5, np.float32)}, ("x_train", "outside [0, 1]")),
        ({"x_test": np.full((2, 3, 2, 2), -0.1, np.float32)}, ("x_test", "outside [0, 1]")),
        ({"x_train": np.full((4, 3, 2, 2), np.nan, np.float32)}, ("x_train", "outside [0, 1]")),
        ({"x_train": np.zeros((4, 3), np.float32)}, ("x_train", "shape")),
        ({"x_train": np.zeros((4, 3, 2, 2), np.int32)}, ("x_train", "dtype")),
        ({"y_train": np.array([0, 1, 0])}, ("y_train", "3 labels")),
        ({"y_test": np.array([0.5, 1.0])}, ("y_test", "non-integer")),
        ({"y_train": np.array([0, -1, 0, 1])}, ("y_train", "-1")),
        ({"x_test": np.zeros((2, 3, 3, 3), np.float32)}, ("x_test", "same shape")),
    ],
)
def test_npz_bad_arrays_are_one_line_errors(tmp_path, override, words):
    msg = npz_error(tmp_path, **{**GOOD, **override})
    assert "datasets.npz" in msg and all(w in msg for w in words), msg


def test_npz_bad_path_and_options(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("npz"))
    assert "datasets.npz.path" in one_line(exc) and "None" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("npz", path=str(tmp_path / "nope.npz")))
    assert "datasets.npz.path" in one_line(exc) and "nope.npz" in str(exc.value)
    (tmp_path / "text.npz").write_text("not a zip\n")
    with pytest.raises(DataError) as exc:
        load_dataset(DatasetSpec("npz", path=str(tmp_path / "text.npz")))
    assert "datasets.npz.path" in one_line(exc)
    # object arrays would need unpickling: refused, not executed
    objs = {**GOOD, "y_test": np.array([0, "a"], dtype=object)}
    assert "datasets.npz.path" in npz_error(tmp_path, **objs)
    assert "datasets.npz.options.augment" in npz_error(tmp_path, options={"augment": "crop,rotate"}, **GOOD)
    assert "datasets.npz.options.eps" in npz_error(tmp_path, options={"eps": "big"}, **GOOD)


CIFAR_SUBSET = shared_data_file("cifar10_test_subset.npz")


@pytest.mark.skipif(CIFAR_SUBSET is None, reason="shared/data/cifar10_test_subset.npz not present")
def test_npz_from_the_shared_cifar10_subset(tmp_path):
    with np.load(CIFAR_SUBSET, allow_pickle=False) as f:
        x, y = f["x"][:500], f["y"][:500]
    path = write_npz(tmp_path / "c10.npz", x_train=x[:400], y_train=y[:400], x_test=x[400:], y_test=y[400:])
    data = load_dataset(DatasetSpec("npz", path=path))
    assert data.x_train.shape == (400, 3, 32, 32) and data.x_test.shape == (100, 3, 32, 32)
    assert data.info.num_classes == 10
    assert torch.bincount(data.y_train).tolist() == [40] * 10  # the file is class round-robin
    torch.testing.assert_close(data.x_test[7], torch.from_numpy(x[407].transpose(2, 0, 1) / 255.0).float())
    # CIFAR-10 statistics (JPEG copy): mean about (0.49, 0.48, 0.45)
    assert data.info.mean == pytest.approx((0.49, 0.48, 0.45), abs=0.03)


# --------------------------------------------------------------------------- torchvision files


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def pickle_py2(path: Path, obj: dict) -> None:
    """The CIFAR files are Python 2 pickles: str keys, read back by torchvision with latin1."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def fake_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """CIFAR rows: uint8 [n, 3072], the red plane, then green, then blue (each 32×32 row-major)."""
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def as_chw(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32) / 255.0).float()


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for i in range(1, 6):
        rows, labels = fake_images(rng, 3), [int(v) for v in rng.integers(0, 10, 3)]
        pickle_py2(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": rows,
                                                "labels": labels, "filenames": [f"{i}_{k}.png" for k in range(3)]})
        written[f"data_batch_{i}"] = (rows, labels)
    rows, labels = fake_images(rng, 4), [3, 1, 4, 1]
    pickle_py2(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": rows, "labels": labels})
    written["test_batch"] = (rows, labels)
    pickle_py2(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 3, "num_vis": 3072})
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    return tmp_path, written


def test_cifar10_reads_the_torchvision_files(cifar10_root):
    root, written = cifar10_root
    data = load_dataset(DatasetSpec("cifar10", root=str(root)))
    info = data.info
    assert info.name == "cifar10" and info.num_classes == 10 and info.input_shape == (3, 32, 32)
    assert info.classes == CIFAR10_CLASSES and info.eps == pytest.approx(8 / 255)
    assert info.augment == ("crop", "flip") and info.crop_padding == 4
    train_rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert torch.equal(data.x_train, as_chw(train_rows))  # pixel-exact after /255, HWC -> CHW
    assert torch.equal(data.x_test, as_chw(written["test_batch"][0]))
    assert data.y_train.dtype == torch.int64 and data.y_train.tolist() == train_labels
    assert data.y_test.tolist() == [3, 1, 4, 1]


def test_cifar10_missing_or_empty_root_names_the_field(tmp_path, cifar10_root):
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("cifar10"))
    assert one_line(exc).startswith("datasets.cifar10.root: None") and "download: true" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_dataset(DatasetSpec("cifar10", root=str(tmp_path / "absent")))
    assert one_line(exc).startswith("datasets.cifar10.root:") and "absent" in str(exc.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(DatasetSpec("cifar10", root=str(empty)))
    msg = one_line(exc)
    assert msg.startswith("datasets.cifar10.root:") and "cifar-10-batches-py" in msg
    # a truncated file no longer matches its md5: torchvision refuses it, we say which root
    root, _ = cifar10_root
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError) as exc:
        load_dataset(DatasetSpec("cifar10", root=str(root)))
    assert one_line(exc).startswith("datasets.cifar10.root:")


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train_rows, test_rows = fake_images(rng, 6), fake_images(rng, 2)
    fine, coarse = [0, 99, 42, 7, 7, 13], [0, 19, 5, 1, 1, 3]
    pickle_py2(folder / "train", {"data": train_rows, "fine_labels": fine, "coarse_labels": coarse,
                                  "filenames": [f"{k}.png" for k in range(6)], "batch_label": "training batch 1 of 1"})
    pickle_py2(folder / "test", {"data": test_rows, "fine_labels": [5, 98], "coarse_labels": [2, 4]})
    names = [f"class{k:02d}" for k in range(100)]
    pickle_py2(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super{k}" for k in range(20)]})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5(folder / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5(folder / "test")]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5(folder / "meta")})

    data = load_dataset(DatasetSpec("cifar100", root=str(tmp_path)))
    assert data.info.num_classes == 100 and data.info.classes == tuple(names)
    assert torch.equal(data.x_train, as_chw(train_rows)) and torch.equal(data.x_test, as_chw(test_rows))
    assert data.y_train.tolist() == fine and data.y_test.tolist() == [5, 98]


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path, monkeypatch):
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(2)
    images, labels = {}, {"train": np.array([10, 1, 9, 10, 5]), "test": np.array([3, 10])}
    split_list = dict(SVHN.split_list)
    for split, labs in labels.items():
        x = rng.integers(0, 256, (32, 32, 3, len(labs)), dtype=np.uint8)  # [H, W, C, N] as in the .mat files
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": labs.reshape(-1, 1).astype(np.uint8)})
        images[split] = torch.from_numpy(x.transpose(3, 2, 0, 1) / 255.0).float()
        url, name, _ = split_list[split]
        split_list[split] = [url, name, md5(tmp_path / name)]
    monkeypatch.setattr(SVHN, "split_list", split_list)

    data = load_dataset(DatasetSpec("svhn", root=str(tmp_path)))
    assert data.info.num_classes == 10 and data.info.augment == ("crop",)  # digits are not mirror-symmetric
    assert data.info.classes == tuple(str(d) for d in range(10))
    assert torch.equal(data.x_train, images["train"]) and torch.equal(data.x_test, images["test"])
    assert data.y_train.tolist() == [0, 1, 9, 0, 5] and data.y_test.tolist() == [3, 0]

    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset(DatasetSpec("svhn", root=str(tmp_path)))
    assert one_line(exc).startswith("datasets.svhn.root:") and "test_32x32.mat" in str(exc.value)


# --------------------------------------------------------------------------- augmentation


def info_with(augment: tuple[str, ...], padding: int = 2) -> DatasetInfo:
    return DatasetInfo("t", 2, (2, 5, 6), (0.5, 0.5), (0.25, 0.25), 8 / 255, augment=augment, crop_padding=padding)


def test_crop_returns_a_shifted_window_of_the_zero_padded_input():
    x = torch.rand(64, 2, 5, 6) + 0.1  # no zeros inside, so padding is recognisable
    out = augment_batch(x, info_with(("crop",)), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out[i], padded[i, :, dy:dy + 5, dx:dx + 6])]
        assert len(matches) == 1, i
        shifts.add(matches[0])
    assert len(shifts) > 10  # the offsets really are random, over the whole (2p+1)² range
    assert {dy for dy, _ in shifts} == set(range(5)) and {dx for _, dx in shifts} == set(range(5))


def test_flip_mirrors_about_half_the_batch():
    x = torch.rand(200, 2, 5, 6)
    out = augment_batch(x, info_with(("flip",)), torch.Generator().manual_seed(0))
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(200)])
    mirrored = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(200)])
    assert bool((same ^ mirrored).all())  # each image either untouched or mirrored left-right
    assert 60 < int(mirrored.sum()) < 140


def test_augment_is_a_no_op_without_augmentations_and_seeded_otherwise():
    x = torch.rand(8, 2, 5, 6)
    assert torch.equal(augment_batch(x, info_with(()), torch.Generator().manual_seed(0)), x)
    assert torch.equal(augment_batch(x, info_with(("crop",), padding=0)), x)
    both = info_with(("crop", "flip"))
    a = augment_batch(x, both, torch.Generator().manual_seed(5))
    b = augment_batch(x, both, torch.Generator().manual_seed(5))
    c = augment_batch(x, both, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- cifar10_proxy


def proxy_sources(tmp_path: Path, monkeypatch, per_class: int = 5, jpeg: bool = False) -> tuple[Path, Path, np.ndarray]:
    """The same fake CIFAR-10 test set two ways: an official-format root (test_batch in a shuffled
    order) and the shared .npz layout (round-robin rows with each image's rank in its class)."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(7)
    n = 10 * per_class
    labels = rng.permutation(np.repeat(np.arange(10), per_class))  # the "test_batch order"
    rows = fake_images(rng, n)
    folder = tmp_path / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    pickle_py2(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": rows, "labels": labels.tolist()})
    pickle_py2(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": n, "num_vis": 3072})
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    rank = np.array([int(np.sum(labels[:i] == labels[i])) for i in range(n)])
    order = np.lexsort((labels, rank))
    hwc = rows.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    names = [f"test/{CIFAR10_CLASSES[c]}/{r:04d}.{'jpg' if jpeg else 'png'}" for c, r in zip(labels[order], rank[order], strict=True)]
    npz = tmp_path / "copy.npz"
    np.savez(npz, x=hwc[order], y=labels[order], class_rank=rank[order], src_path=np.array(names))
    return tmp_path / "root", npz, hwc


def test_cifar10_proxy_splits_the_test_set_class_balanced_the_same_from_root_and_npz(tmp_path, monkeypatch):
    root, npz, _ = proxy_sources(tmp_path, monkeypatch)
    opts = {"n_train": 30, "n_test": 20}
    from_root = load_dataset(DatasetSpec("cifar10_proxy", root=str(root), options=opts))
    from_npz = load_dataset(DatasetSpec("cifar10_proxy", path=str(npz), options=opts))
    for part in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_root, part), getattr(from_npz, part)), part
    # round-robin: each block of ten rows holds one image of every class; train and test are disjoint
    assert from_root.y_train.tolist() == list(range(10)) * 3 and from_root.y_test.tolist() == list(range(10)) * 2
    flat = torch.cat([from_root.x_train, from_root.x_test]).flatten(1)
    assert torch.unique(flat, dim=0).shape[0] == 50
    assert from_root.info.source.startswith("torchvision CIFAR-10 test_batch") and "sha256" in from_npz.info.source
    assert from_root.info.notes == (PROXY_NOTE,) == from_npz.info.notes  # png names: no JPEG caveat


def test_cifar10_proxy_from_a_jpeg_copy_says_so(tmp_path, monkeypatch):
    _, npz, _ = proxy_sources(tmp_path, monkeypatch, jpeg=True)
    data = load_dataset(DatasetSpec("cifar10_proxy", path=str(npz), options={"n_train": 10, "n_test": 10}))
    assert data.info.notes == (PROXY_NOTE, JPEG_NOTE) and "JPEG copy" in data.info.source


@pytest.mark.parametrize(("kind", "spec_kw", "expected"), [
    ("no test batch", {"root": "EMPTY"}, "datasets.cifar10_proxy.root:"),
    ("not an npz", {"path": "TEXT"}, "datasets.cifar10_proxy.path:"),
    ("npz without class_rank", {"path": "OTHER"}, "is not the expected .npz (arrays x, y, class_rank)"),
    ("both sources", {"root": "EMPTY", "path": "TEXT"}, "exactly one of root"),
    ("no source", {}, "exactly one of root"),
    ("not a multiple of 10", {"path": "NPZ", "options": {"n_train": 25}}, "n_train: 25 is not allowed"),
    ("more than the source", {"path": "NPZ", "options": {"n_train": 40, "n_test": 20}}, "at most the 50 images"),
])  # fmt: skip
def test_cifar10_proxy_bad_sources_are_one_line(tmp_path, monkeypatch, kind, spec_kw, expected):
    _, npz, _ = proxy_sources(tmp_path, monkeypatch)
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "other.npz", x_train=np.zeros((2, 2)))
    paths = {"EMPTY": tmp_path / "empty", "TEXT": tmp_path / "text.npz", "OTHER": tmp_path / "other.npz", "NPZ": npz}
    kw = {k: str(paths[v]) if isinstance(v, str) else v for k, v in spec_kw.items()}
    with pytest.raises((DataError, ConfigError)) as exc:
        load_dataset(DatasetSpec("cifar10_proxy", **kw))
    assert expected in one_line(exc), one_line(exc)


def test_cifar10_proxy_of_the_shared_jpeg_copy(tmp_path):
    shared = shared_data_file("cifar10_test_subset.npz")
    if shared is None:
        pytest.skip("the shared CIFAR-10 test copy (../shared/data/cifar10_test_subset.npz) is absent")
    data = load_dataset(DatasetSpec("cifar10_proxy", path=str(shared), options={"n_train": 8000, "n_test": 2000}))
    assert data.x_train.shape == (8000, 3, 32, 32) and data.x_test.shape == (2000, 3, 32, 32)
    assert torch.bincount(data.y_train).tolist() == [800] * 10 and torch.bincount(data.y_test).tolist() == [200] * 10
    assert data.info.notes == (PROXY_NOTE, JPEG_NOTE)
