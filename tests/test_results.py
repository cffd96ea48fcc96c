"""The results store: atomic writes, validation messages, is_done, scan and load()."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from corebench.core.errors import DiskError, ResultsError
from corebench.core.protocol import Protocol
from corebench.core.spec import AUTOATTACK_VERSION_ATTACKS
from corebench.store.record import SCHEMA_VERSION, Record, parse_record
from corebench.store.results import (
    COLUMNS,
    is_done,
    load,
    read_record,
    record_state,
    scan,
    write_indices,
    write_record,
)

from records import example_record, relpath


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- writing


def test_write_record_round_trips_with_sorted_keys_and_creates_folders(tmp_path: Path) -> None:
    rec = example_record(method="easycore", fraction=0.3, seed=1, autoattack_acc=38.7)
    path = tmp_path / "a" / "b" / "seed1.json"
    write_record(path, rec)
    assert read_record(path) == parse_record(json.dumps(rec))
    text = path.read_text()
    assert text == json.dumps(rec, sort_keys=True, indent=1) + "\n"
    assert _files(tmp_path) == ["a/b/seed1.json"]


def test_write_record_with_nan_raises_and_leaves_no_file_or_temp(tmp_path: Path) -> None:
    rec = example_record(autoattack_acc=math.nan)
    path = tmp_path / "cell" / "seed0.json"
    with pytest.raises(ResultsError, match=r"seed0\.json: record cannot be written as JSON"):
        write_record(path, rec)
    assert _files(tmp_path) == []


def test_failed_write_keeps_the_previous_record_intact(tmp_path: Path) -> None:
    path = tmp_path / "seed0.json"
    good = example_record(autoattack_acc=41.0)
    write_record(path, good)
    before = path.read_bytes()
    with pytest.raises(ResultsError):
        write_record(path, example_record(clean_acc=math.inf))
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["seed0.json"]


def test_crash_during_rename_removes_the_temp_file(tmp_path: Path, monkeypatch) -> None:
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DiskError, match=r"cannot be written \(disk full\)"):
        write_record(tmp_path / "seed0.json", example_record())
    assert _files(tmp_path) == []


def test_write_indices_saves_sorted_int64_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "x" / "seed0.indices.npy"
    write_indices(path, np.array([7, 3, 5], dtype=np.int32))
    got = np.load(path, allow_pickle=False)
    assert got.dtype == np.int64 and got.tolist() == [3, 5, 7]
    assert _files(tmp_path) == ["x/seed0.indices.npy"]


@pytest.mark.parametrize("bad", [np.array([[1, 2]]), np.array([0.5, 1.0])])
def test_write_indices_rejects_non_integer_or_2d(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ResultsError, match="1-D integer array"):
        write_indices(tmp_path / "i.npy", bad)
    assert _files(tmp_path) == []


# --------------------------------------------------------------------------- reading


def _mutate(rec: dict, dotted: str, value: object) -> dict:
    node = rec
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return rec


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("metrics.clean_acc", "91.2", "metrics.clean_acc: '91.2' is not allowed; allowed: a number in [0, 100]"),
        ("metrics.autoattack_acc", None, "metrics.autoattack_acc: required (AutoAttack is enabled)"),
        ("metrics.autoattack_acc", 130.0, "metrics.autoattack_acc: 130.0 is not allowed; allowed: a number in [0, 100]"),
        ("metrics.n_eval", True, "metrics.n_eval: True is not allowed; allowed: a positive integer"),
        ("status", "done", "status: 'done' is not allowed; allowed: ok, failed"),
        ("schema_version", 99, "schema_version: 99 is not known; known: 1"),
        ("metrics", KeyError, "metrics: missing; allowed: a value (the key is required)"),
        ("cell.fraction", 1.5, "cell.fraction: 1.5 is not allowed; allowed: a number in (0, 1]"),
        ("cell.seed", "0", "cell.seed: '0' is not allowed; allowed: an integer"),
        ("config.evaluation.eps", "8/255", "config.evaluation.eps: '8/255' is not allowed; allowed: a number"),
        ("config.evaluation.autoattack.attacks", "apgd-ce", "config.evaluation.autoattack.attacks: 'apgd-ce' is not allowed; allowed: a list"),
        ("config.scoring.epochs", 0, "config.scoring.epochs: 0 is not allowed; allowed: a positive integer"),
        ("config.training.lr_typo", 0.1, "config.training.lr_typo: 'lr_typo' is not allowed; allowed: keys epochs"),
        ("timings.train_s", "20s", "timings.train_s: '20s' is not allowed; allowed: a number"),
    ],
)
def test_read_record_names_file_and_field(tmp_path: Path, field: str, value: object, message: str) -> None:
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(_mutate(example_record(), field, value)))
    with pytest.raises(ResultsError) as info:
        read_record(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_failed_record_needs_an_error_line(tmp_path: Path) -> None:
    rec = example_record(error="RuntimeError: boom")
    path = tmp_path / "seed0.json"
    write_record(path, rec)
    assert read_record(path).status == "failed"
    path.write_text(json.dumps(_mutate(rec, "error", None)))
    with pytest.raises(ResultsError, match="error: a one-line error message is required when status is failed"):
        read_record(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"schema_version": 1, "cell_', "not valid JSON"),
        ("[1, 2]", "top level: \\[1, 2\\] is not allowed; allowed: a mapping of keys schema_version"),
        ("", "not valid JSON"),
    ],
)
def test_read_record_rejects_partial_or_wrong_json(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "seed0.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=f"^{path}: {message}"):
        read_record(path)


def test_read_record_of_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file"):
        read_record(tmp_path / "nope.json")


def test_is_done_only_for_valid_ok_records_of_the_cell(tmp_path: Path) -> None:
    rec, failed_rec = example_record(), example_record(seed=1, error="ValueError: x")
    ok, failed, bad = tmp_path / relpath(rec), tmp_path / relpath(failed_rec), tmp_path / "bad.json"
    write_record(ok, rec)
    write_record(failed, failed_rec)
    bad.write_text('{"status": "ok"')
    assert is_done(ok) and is_done(ok, rec["cell_id"])
    assert record_state(ok, "another-cell-id") == "stale" and not is_done(ok, "another-cell-id")
    assert not is_done(failed) and record_state(failed) == "failed"  # failed cells are retried
    assert not is_done(bad) and record_state(bad) == "malformed"  # so are malformed ones
    assert record_state(tmp_path / "missing.json") == "missing"
    moved = tmp_path / "elsewhere" / "seed0.json"  # a record read only where its key says
    write_record(moved, rec)
    assert record_state(moved, rec["cell_id"]) == "malformed"


# --------------------------------------------------------------------------- scan / load


def _populate(root: Path) -> list[dict]:
    recs = [
        example_record(grid="g", method="random", fraction=0.1, seed=0, autoattack_acc=30.0),
        example_record(grid="g", method="easycore", fraction=0.1, seed=0, autoattack_acc=33.5),
        example_record(grid="g", method="easycore", fraction=0.1, seed=1, error="RuntimeError: oom"),
        example_record(grid="g", method="full", fraction=1.0, seed=0, autoattack_acc=45.0),
    ]
    for rec in recs:
        write_record(root / relpath(rec), rec)
    return recs


def test_scan_returns_sorted_records_with_path_and_problems(tmp_path: Path) -> None:
    _populate(tmp_path)
    bad = tmp_path / "g" / "digits" / "resnet18" / "standard" / "random" / "f0.1" / "seed9.json"
    bad.write_text("{")
    (bad.parent / ".seed8.json.123.abcd.tmp").write_text("{")  # a crashed write: ignored
    records, problems = scan(tmp_path)
    paths = [s.path for s in records]
    assert paths == sorted(paths) and len(paths) == 4
    assert [(p, reason.split(" (")[0]) for p, reason in problems] == [(bad, "not valid JSON")]


def test_scan_of_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results directory"):
        scan(tmp_path / "missing")


def test_load_columns_types_and_values(tmp_path: Path) -> None:
    _populate(tmp_path)
    df = load(tmp_path)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4
    for col in ("dataset", "arch", "scoring_arch", "regime", "method", "method_label", "fraction",
                "seed", "status", "clean_acc", "pgd_acc", "autoattack_acc", "n_eval", "norm", "eps",
                "autoattack_version", "autoattack_attacks", "n_examples", "grid", "cell_id",
                "total_s", "path"):  # fmt: skip
        assert col in df.columns
    assert df["autoattack_acc"].dtype == float and df["fraction"].dtype == float
    assert df["seed"].dtype == np.int64
    row = df[(df.method == "easycore") & (df.status == "ok")].iloc[0]
    assert row.autoattack_acc == 33.5 and row.n_eval == 450 and row.grid == "g"
    assert row.autoattack_attacks == "apgd-ce,apgd-t" and row.autoattack_version == "custom"
    assert row.eps == pytest.approx(32 / 255) and row.norm == "Linf" and row.n_examples == 450
    failed = df[df.status == "failed"].iloc[0]
    assert math.isnan(failed.autoattack_acc) and pd.isna(failed.n_eval)
    assert failed.error == "RuntimeError: oom"
    assert set(df.path.map(lambda p: Path(p).name)) == {"seed0.json", "seed1.json"}


def test_load_skips_malformed_by_default_and_strict_names_the_file(tmp_path: Path) -> None:
    _populate(tmp_path)
    bad = tmp_path / "g" / "x.json"
    bad.write_text(json.dumps(_mutate(example_record(), "metrics.clean_acc", "90")))
    assert len(load(tmp_path)) == 4
    with pytest.raises(ResultsError, match=rf"^{bad}: metrics\.clean_acc: '90' is not allowed"):
        load(tmp_path, strict=True)


def test_load_of_empty_folder_has_the_columns(tmp_path: Path) -> None:
    df = load(tmp_path)
    assert df.empty and list(df.columns) == list(COLUMNS)


def test_protocol_resolves_empty_attack_list_and_tells_protocols_apart() -> None:
    spelled = example_record(autoattack_version="standard",
                             autoattack_attacks=list(AUTOATTACK_VERSION_ATTACKS["standard"]))  # fmt: skip
    empty = example_record(autoattack_version="standard")
    empty["config"]["evaluation"]["autoattack"]["attacks"] = None
    assert Protocol.of(spelled["config"]["evaluation"]).key == Protocol.of(empty["config"]["evaluation"]).key
    other_eps = example_record(eps=8 / 255)
    other_n = example_record(n_examples=1000)
    keys = {Protocol.of(r["config"]["evaluation"]).key for r in (example_record(), other_eps, other_n, spelled)}
    assert len(keys) == 4


def test_example_record_is_valid_and_current_schema(tmp_path: Path) -> None:
    rec = example_record(method="full", fraction=1.0)
    assert rec["schema_version"] == SCHEMA_VERSION
    write_record(tmp_path / "r.json", rec)
    assert read_record(tmp_path / "r.json").cell.method == "full"


def test_scan_yields_typed_records_with_their_path_and_protocol(tmp_path: Path) -> None:
    recs = _populate(tmp_path)
    records, problems = scan(tmp_path)
    assert problems == [] and len(records) == len(recs)
    by_path = {tmp_path / relpath(rec): rec for rec in recs}
    for path, record, protocol in records:
        rec = by_path[path]
        assert isinstance(record, Record) and record == parse_record(json.dumps(rec))
        assert (record.grid.name, record.cell.method, record.cell.seed, record.status) == (
            rec["grid"]["name"], rec["cell"]["method"], rec["cell"]["seed"], rec["status"])
        assert protocol == Protocol.of(record.config.evaluation) == Protocol.of(rec["config"]["evaluation"])
    # `config_written`: the settings as the file spells them, never written back
    path, record, _ = records[0]
    assert record.config_written == by_path[path]["config"]
    assert "config_written" not in record.model_dump()


def test_scan_parses_each_file_once_with_pydantic_and_never_with_json_loads(tmp_path: Path, monkeypatch) -> None:
    import corebench.store.results as results

    _populate(tmp_path)
    parsed = []

    def once(data: bytes) -> Record:
        parsed.append(data)
        return parse_record(data)

    def no_json_loads(*args: object, **kwargs: object) -> None:
        raise AssertionError("a record was parsed a second time, by json.loads")

    monkeypatch.setattr(results, "parse_record", once)
    monkeypatch.setattr(json, "loads", no_json_loads)
    records, _ = scan(tmp_path)
    df = results.frame(records)  # the DataFrame comes from the typed records too
    assert len(parsed) == len(records) == 4 and len(df) == 4


def test_records_written_from_the_model_are_the_bytes_of_their_json_form(tmp_path: Path) -> None:
    """A `Record` and the dict it was made from are written as the same bytes (`run_cell` writes
    the model; records on disk do not change)."""
    rec = example_record(method="easycore", seed=1)
    model = parse_record(json.dumps(rec))
    write_record(tmp_path / "a.json", model)
    write_record(tmp_path / "b.json", model.model_dump(mode="json"))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert read_record(tmp_path / "a.json").model_dump() == model.model_dump()
