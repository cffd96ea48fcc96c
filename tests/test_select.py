"""`corebench select`: with --grid it uses the grid's dataset, scoring architecture, settings and
seed and reuses the grid's cached scoring run; without one it sizes the scoring model."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from corebench.cli import main
from corebench.compute.datasets import load_dataset
from corebench.compute.models import default_scoring_arch
from corebench.core.spec import DatasetSpec

GRID = {
    "name": "sel",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "scoring_architectures": [{"name": "resnet18", "id": "scorer_w2", "kwargs": {"channels": [2, 4, 8, 16]}}],
    "fractions": [0.3],
    "methods": ["easycore", {"name": "easycore", "gradient_pass": "eval", "id": "easycore_eval"}],
    "regimes": ["standard"],
    "seeds": [3],
    "scoring": {"epochs": 1, "batch_size": 256},
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The grid's scoring run, made once by `run --scoring-only` (nothing trained or attacked)."""
    tmp = tmp_path_factory.mktemp("sel")
    grid = tmp / "sel.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    assert main(["run", str(grid), "--results", str(tmp / "res"), "--cache", str(tmp / "c"), "--scoring-only",
                 "--no-progress"]) == 0
    made = {p: p.stat().st_mtime_ns for p in (tmp / "c" / "scoring").glob("*.npz")}
    assert len(made) == 1
    return tmp, grid, made


def test_select_with_a_grid_reuses_its_scoring_run(scored, capsys):
    tmp, grid, made = scored
    out = tmp / "keep.npy"
    code = main(["select", "--grid", str(grid), "--method", "easycore", "--fraction", "0.2", "--out", str(out),
                 "--cache", str(tmp / "c"), "--no-progress"])
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp / "c" / "scoring").glob("*.npz")} == made  # nothing re-made
    text = capsys.readouterr().out
    assert "scoring model scorer_w2 (1 epochs, seed 3)" in text and "dataset digits" in text
    assert np.load(out).size == round(0.2 * 1347)


def test_select_with_a_grid_takes_a_method_row_by_its_label(scored, capsys):
    tmp, grid, made = scored
    out = tmp / "keep_eval.npy"
    assert main(["select", "--grid", str(grid), "--method", "easycore_eval", "--fraction", "0.3", "--out", str(out),
                 "--cache", str(tmp / "c"), "--no-progress"]) == 0
    assert "method easycore_eval" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tmp / "c" / "scoring").glob("*.npz")} == made  # eval-pass AIGN cached too
    assert np.load(out).size == round(0.3 * 1347)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "cifar10"], "--dataset: 'cifar10' is not allowed; allowed: one of the grid's: digits"),
        (["--arch", "resnet50"], "--arch: 'resnet50' is not allowed; allowed: one of the grid's: scorer_w2"),
        (["--scoring-epochs", "3"], "--scoring-epochs: 3 is not allowed; allowed: nothing with --grid"),
    ],
)
def test_select_with_a_grid_rejects_what_the_grid_does_not_hold(scored, capsys, extra, message):
    tmp, grid, _ = scored
    code = main(["select", "--grid", str(grid), "--method", "easycore", "--fraction", "0.2", "--out",
                 str(tmp / "x.npy"), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_select_without_a_grid_sizes_the_scoring_model():
    digits = load_dataset(DatasetSpec("digits")).info
    small = default_scoring_arch(digits)
    assert small.name == "resnet10t" and small.label == "resnet10t_w8" and small.kwargs["stem_width"] == 8
    from dataclasses import replace

    cifar_sized = replace(digits, input_shape=(3, 32, 32))
    assert default_scoring_arch(cifar_sized).name == "resnet18"


def test_select_needs_a_dataset_without_a_grid(capsys):
    code = main(["select", "--method", "easycore", "--fraction", "0.2", "--out", "x.npy"])
    assert code == 2 and "--dataset: None is not allowed; allowed: a dataset name (or --grid GRID.yaml)" in capsys.readouterr().err
