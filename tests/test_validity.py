"""No stale, misplaced or lost numbers: a record holds only for its cell, the cache only for its
data, and the numbers do not depend on how many workers made them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from corebench.cli import main
from corebench.compute.datasets import load_dataset
from corebench.compute.scoring import get_signals
from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig

from helpers import FAST_GRID, without_seconds, write_fast_grid


def _run(grid: Path, tmp: Path, *extra: str) -> int:
    return main(["run", str(grid), "--results", str(tmp / "res"), "--cache", str(tmp / "cache"), "--no-progress", *extra])


def _records(results: Path) -> dict[str, dict]:
    return {p.relative_to(results).as_posix(): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}


def test_workers_do_not_change_a_single_byte_of_the_records(tmp_path):
    """`--workers 1` and `--workers 2` give the same records (timings aside), threads recorded."""
    grid = write_fast_grid(tmp_path)
    assert _run(grid, tmp_path / "one", "--workers", "1") == 0
    assert _run(grid, tmp_path / "two", "--workers", "2") == 0
    one, two = _records(tmp_path / "one" / "res"), _records(tmp_path / "two" / "res")
    assert sorted(one) == sorted(two) and len(one) == 3
    for rel in one:
        assert without_seconds(one[rel]) == without_seconds(two[rel]), rel
        assert one[rel]["config"]["threads"] == 1
    # the kept indices too
    for path in (tmp_path / "one" / "res").rglob("*.npy"):
        other = tmp_path / "two" / "res" / path.relative_to(tmp_path / "one" / "res")
        assert path.read_bytes() == other.read_bytes()


def test_an_edited_grid_makes_its_records_stale_and_they_are_rerun(tmp_path, capsys):
    grid = write_fast_grid(tmp_path, methods=["random"], full_data_reference=False)
    assert _run(grid, tmp_path) == 0
    (record,) = _records(tmp_path / "res").values()
    capsys.readouterr()
    assert _run(grid, tmp_path) == 0
    assert "1 cells, 1 already done, 0 finished" in capsys.readouterr().out

    grid = write_fast_grid(tmp_path, methods=["random"], full_data_reference=False,
                           training={**FAST_GRID["training"], "epochs": 1})  # fmt: skip
    assert main(["status", str(tmp_path / "res"), "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "0 of 1 cells done, 1 pending (1 stale" in out and "stale: " in out and "seed0.json" in out
    assert _run(grid, tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 stale records (finished under other settings or data) were rerun" in out and "1 finished" in out
    (rerun,) = _records(tmp_path / "res").values()
    assert rerun["config"]["training"]["epochs"] == 1 and rerun["cell_id"] != record["cell_id"]
    assert main(["status", str(tmp_path / "res"), "--grid", str(grid)]) == 0
    assert "1 of 1 cells done, 0 pending (0 stale" in capsys.readouterr().out


def test_new_images_in_an_npz_make_new_signals_and_stale_records(tmp_path, digits, capsys):
    """The issue's case: replacing an npz file's images used to reuse the old scoring signals."""
    npz = tmp_path / "mine.npz"
    arrays = {"x_train": digits.x_train.numpy(), "y_train": digits.y_train.numpy(),
              "x_test": digits.x_test.numpy(), "y_test": digits.y_test.numpy()}  # fmt: skip
    np.savez(npz, **arrays)
    changes = {"datasets": [{"name": "npz", "path": str(npz), "options": {"eps": "32/255", "augment": "crop"}}],
               "methods": ["easycore"], "full_data_reference": False,
               "evaluation": {**FAST_GRID["evaluation"], "autoattack": {"enabled": False}}}  # fmt: skip
    grid = write_fast_grid(tmp_path, **changes)
    assert _run(grid, tmp_path) == 0
    (first,) = _records(tmp_path / "res").values()
    rng = np.random.default_rng(0)
    arrays["x_train"] = rng.permutation(arrays["x_train"])  # same labels, shape and first 256 labels' bytes
    np.savez(npz, **arrays)
    capsys.readouterr()
    assert _run(grid, tmp_path) == 0
    assert "1 stale records" in capsys.readouterr().out
    (second,) = _records(tmp_path / "res").values()
    assert second["cell_id"] != first["cell_id"]
    assert len(list((tmp_path / "cache" / "scoring").glob("*.npz"))) == 2  # the old signals were not reused


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "garbage", "no_metadata", "empty"])
def test_a_damaged_cache_entry_is_reported_once_removed_and_remade(tmp_path, digits, caplog, damage):
    arch = ArchSpec("resnet10t", {"channels": [4, 8, 16, 32], "stem_width": 4})
    data = load_dataset(DatasetSpec("digits"))
    data.x_train, data.y_train = data.x_train[:200], data.y_train[:200]

    def signals():
        return get_signals(data, DatasetSpec("digits"), arch, ScoringConfig(epochs=1, snapshot_epochs=(0,)), 0,
                           {"input_grad_norm"}, cache_dir=tmp_path, device=torch.device("cpu"), progress=False)

    made = signals()
    (entry,) = tmp_path.glob("*.npz")
    blob = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_a_byte":  # still a valid zip of arrays: only the checksum sees it
        at = blob.index(np.float32(made.signals["input_grad_norm"][0, 5]).tobytes())
        entry.write_bytes(blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:])
    elif damage == "garbage":
        entry.write_bytes(b"\x00" * 100)
    elif damage == "no_metadata":  # a job killed between the npz and its metadata
        entry.with_suffix(".json").unlink()
    else:
        entry.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        again = signals()
        assert not again.cached  # remade, not read
        third = signals()
    assert third.cached  # and the remade entry is read back
    warnings = [r for r in caplog.records if "scoring cache entry" in r.getMessage()]
    assert len(warnings) == 1 and "removed, its signals are made again" in warnings[0].getMessage()
    np.testing.assert_array_equal(again.signals["input_grad_norm"], made.signals["input_grad_norm"])


def test_a_record_off_its_path_is_rejected_by_name(tmp_path, capsys):
    """`cp seed0.json "seed0 copy.json"` plus an edit: status names the copy, boards skip it."""
    from corebench.store.results import write_record

    from records import example_record, relpath

    rec = example_record(grid="g")
    write_record(tmp_path / relpath(rec), rec)
    copy = (tmp_path / relpath(rec)).with_name("seed0 copy.json")
    write_record(copy, {**rec, "metrics": {**rec["metrics"], "clean_acc": 99.0}})
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"malformed: {copy}: its grid and cell belong at .../g/digits/resnet18/standard/random/f0.3/seed0.json" in out
    write_record(tmp_path / "second" / relpath(rec), rec)
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / relpath(rec)) in err and str(tmp_path / "second") in err


def test_a_plugin_code_hash_enters_only_its_own_cells_id_and_status_names_it():
    """`method_code` (a plug-in's source hash) is in the id when given and left out when None,
    so the ids of corebench's own methods do not change; a record keeps it and reproduces it."""
    from corebench.cells.identity import cell_id, cell_settings, differences, record_settings
    from corebench.core.spec import AttackConfig, EvaluationConfig, TrainingConfig
    from corebench.store.record import CellConfig

    config = CellConfig(dataset=DatasetSpec("digits"), arch=ArchSpec("resnet10t"), scoring_arch=ArchSpec("resnet10t"),
                        scoring=ScoringConfig(), training=TrainingConfig(), attack=AttackConfig(),
                        evaluation=EvaluationConfig())
    key = {"method": "mine", "fraction": 0.5, "seed": 0}
    plain = cell_settings(key, {}, config, "abc")
    assert "method_code" not in plain and cell_settings(key, {}, config, "abc", None) == plain
    old, new = cell_settings(key, {}, config, "abc", "1111"), cell_settings(key, {}, config, "abc", "2222")
    assert len({cell_id(plain), cell_id(old), cell_id(new)}) == 3
    record = {"cell": key, "config": config.model_dump(mode="json"), "data": {"fingerprint": "abc"},
              "method_source": {"module": "mine", "distribution": None, "version": None, "code": "1111"}}
    assert record_settings(record) == old
    assert differences(old, new) == ["method code (plug-in source hash): '1111' -> '2222'"]


def test_relative_paths_are_read_from_the_grid_folder_and_name_no_cell(tmp_path, digits, monkeypatch):
    """`path: ../data/mine.npz` in configs/g.yaml reads data/mine.npz from any working
    directory; spelled absolute instead, every cell id and scoring run key stays the same."""
    from corebench.cells.grid import load_grid
    from corebench.drivers.work import plan_work

    (tmp_path / "data").mkdir()
    (tmp_path / "configs").mkdir()
    np.savez(tmp_path / "data" / "mine.npz", x_train=digits.x_train.numpy()[:120], y_train=digits.y_train.numpy()[:120],
             x_test=digits.x_test.numpy()[:40], y_test=digits.y_test.numpy()[:40])
    entry = {"name": "npz", "options": {"eps": "32/255", "augment": "crop"}}
    relative = write_fast_grid(tmp_path / "configs", datasets=[{**entry, "path": "../data/mine.npz"}])
    spec = load_grid(relative)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = load_grid(relative)
    assert Path(moved.datasets[0].path).resolve() == (tmp_path / "data" / "mine.npz").resolve()
    assert not Path(moved.datasets[0].path).is_absolute()  # records keep a short spelling
    absolute = load_grid(write_fast_grid(tmp_path, datasets=[{**entry, "path": str(tmp_path / "data" / "mine.npz")}]))
    works = [plan_work(s, tmp_path / "res", cache=tmp_path / "cache") for s in (moved, absolute)]
    assert [s.cell_id for s in works[0].states] == [s.cell_id for s in works[1].states]
    keys = [[w.scorer.cache_file(k, w.datasets[k[0]]) for k in w.runs()] for w in works]
    assert keys[0] == keys[1] and len(keys[0]) == 1 and keys[0][0] is not None
    assert spec.datasets[0].path != moved.datasets[0].path  # the spelling follows the working directory
