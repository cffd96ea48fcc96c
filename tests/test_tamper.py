"""Issue 23: records bind their inputs, and a record outside the grid is named.

One run of the fast digits grid (random and EasyCore at 30 %, no full-data reference) is shared
by the tests here; each copies it before tampering with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corebench.cli import main
from corebench.store.inputs import changed_inputs, file_digest
from corebench.store.record import parse_record
from corebench.store.results import scan

from helpers import write_fast_grid


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    base = tmp_path_factory.mktemp("tamper")
    grid = write_fast_grid(base, full_data_reference=False,
                           evaluation={"n_examples": 16, "pgd_steps": 1, "autoattack": {"enabled": False}})
    assert main(["run", str(grid), "--results", str(base / "results"), "--cache", str(base / "cache"),
                 "--no-progress"]) == 0  # fmt: skip
    return base


@pytest.fixture
def copy(ran, tmp_path):
    for name in ("results", "cache", "fast.yaml"):
        src = ran / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def _rerun(folder) -> int:
    return main(["run", str(folder / "fast.yaml"), "--results", str(folder / "results"), "--cache",
                 str(folder / "cache"), "--no-progress"])  # fmt: skip


def _record(folder, method):
    (path,) = (folder / "results").rglob(f"{method}/f0.3/seed0.json")
    return path, json.loads(path.read_text())


def test_a_record_carries_the_digests_of_its_inputs(copy):
    path, rec = _record(copy, "easycore")
    inputs = rec["inputs"]
    assert inputs["indices"] == file_digest(path.with_name("seed0.indices.npy"))
    (run,) = inputs["scoring_runs"]
    assert run["key"] == rec["cost"]["scoring_runs"][0]["key"] and "input_grad_norm_eval" in run["signals"]
    assert changed_inputs(parse_record(json.dumps(rec)), path, copy / "cache") == []
    _, random_rec = _record(copy, "random")
    assert random_rec["inputs"]["scoring_runs"] == []


def test_a_replaced_indices_file_is_named_by_status_leaderboard_and_run(copy, capsys):
    path, rec = _record(copy, "random")
    index_file = path.with_name("seed0.indices.npy")
    kept = np.load(index_file)
    np.save(index_file, np.arange(kept.size, dtype=np.int64))  # another coreset of the same size
    capsys.readouterr()
    assert main(["status", str(copy / "results"), "--grid", str(copy / "fast.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 cells done" in out and "seed0.indices.npy were changed after the record was written" in out
    assert main(["leaderboard", str(copy / "results"), "--out", str(copy / "boards")]) == 0
    out = capsys.readouterr().out
    assert "1 finished cells" in out and "inputs changed" in out
    assert _rerun(copy) == 0
    assert "inputs changed: " in capsys.readouterr().out


def test_signals_edited_with_their_checksum_recomputed_are_caught(copy, capsys):
    from corebench.store.cache_entry import write_entry

    path, rec = _record(copy, "easycore")
    key = rec["inputs"]["scoring_runs"][0]["key"]
    npz = copy / "cache" / "scoring" / f"{key}.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["input_grad_norm_eval"] = -arrays["input_grad_norm_eval"]  # the hardest become the easiest
    meta = json.loads(npz.with_suffix(".json").read_text())
    write_entry(npz, arrays, {k: v for k, v in meta.items() if k != "checksum"}, copy / "cache")  # checksum redone
    assert changed_inputs(parse_record(json.dumps(rec)), path) == []  # the indices alone cannot tell
    (why,) = changed_inputs(parse_record(json.dumps(rec)), path, copy / "cache")
    assert f"scoring run {key}: signal input_grad_norm_eval in the cache differs" in why
    capsys.readouterr()
    assert main(["status", str(copy / "results"), "--grid", str(copy / "fast.yaml"), "--cache", str(copy / "cache")]) == 0
    assert "signal input_grad_norm_eval in the cache differs" in capsys.readouterr().out


def test_a_record_for_a_seed_outside_the_grid_is_named(copy, capsys):
    path, rec = _record(copy, "random")
    fake = path.with_name("seed7.json")
    rec["cell"]["seed"] = 7
    fake.write_text(json.dumps(rec))
    shutil.copy(path.with_name("seed0.indices.npy"), fake.with_name("seed7.indices.npy"))
    records, problems = scan(copy / "results")
    assert len(records) == 3 and problems == []  # a valid record on its own
    capsys.readouterr()
    assert main(["status", str(copy / "results"), "--grid", str(copy / "fast.yaml")]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 cells done" in out and "outside the grid: fast/digits/r10w4/standard/random/f0.3/seed7.json" in out
    assert _rerun(copy) == 0
    assert "outside the grid: " in capsys.readouterr().out


# --------------------------------------------------------------------------- corebench verify


def test_verify_re_derives_records_exactly_and_catches_a_hand_edit(copy, capsys):
    capsys.readouterr()
    assert main(["verify", str(copy / "results"), "--sample", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("match  ") == 2 and "(exactly, " in out and "verified 2 records: 2 matched, 0 mismatched" in out
    path, rec = _record(copy, "easycore")
    edited = rec["metrics"]["pgd_acc"] - 6.25  # one image of 16 fewer: plausible, within every bound
    rec["metrics"]["pgd_acc"] = rec["metrics"]["robust"][-1]["pgd_acc"] = edited
    path.write_text(json.dumps(rec))  # its per-image outcomes no longer count to the accuracy: refused
    assert main(["verify", str(copy / "results"), "--cell", str(path), "--no-progress"]) == 2
    assert "a finished record" in capsys.readouterr().err
    rec.pop("per_image_outcomes")  # a plausible edit: as a record older than the field
    path.write_text(json.dumps(rec))
    assert main(["verify", str(copy / "results"), "--cell", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH  " in out and f"metrics.robust[0].pgd_acc: stored {edited}, re-derived" in out
    assert "verified 1 records: 0 matched, 1 mismatched" in out


def test_verify_is_exact_only_on_the_cpu_kernels_a_record_was_made_with(copy, capsys):
    """Another CPU's kernels round differently (a CI machine of another generation re-derived
    the quickstart's records 6 points apart): such a record is compared within the tolerance,
    and the verdict says why; a record older than the kernels field is treated the same."""
    from corebench.drivers.cell import cpu_kernels

    path, rec = _record(copy, "random")
    assert rec["device"].endswith(f"; {cpu_kernels()})")
    capsys.readouterr()
    for device, why in [("cpu (x86_64, 2 cores; kernels AVX2, cpu 0000abcd)", "made with CPU kernels AVX2, cpu 0000abcd, "),
                        ("cpu (x86_64, 2 cores)", "made with CPU kernels not recorded, ")]:
        path.write_text(json.dumps({**rec, "device": device}))
        assert main(["verify", str(copy / "results"), "--cell", str(path), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "match  " in out and f"(within tolerance: {why}re-derived with {cpu_kernels()}, " in out


def test_verify_catches_a_replaced_indices_file_and_a_record_outside_the_grid(copy, capsys):
    path, rec = _record(copy, "random")
    index_file = path.with_name("seed0.indices.npy")
    np.save(index_file, np.arange(np.load(index_file).size, dtype=np.int64))
    fake = path.with_name("seed7.json")
    fake.write_text(json.dumps({**rec, "cell": {**rec["cell"], "seed": 7}}))
    capsys.readouterr()
    assert main(["verify", str(copy / "results"), "--cell", str(path), "--cell", str(fake), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "kept indices: differ" in out and "no cell of grid fast" in out


def test_verify_samples_by_seed_and_refuses_bad_input(copy, capsys):
    from corebench.drivers.verify import choose

    first = [s.path for s in choose(copy / "results", 1, seed=3)]
    assert first == [s.path for s in choose(copy / "results", 1, seed=3)]
    assert main(["verify", str(copy / "nowhere")]) == 2
    assert main(["verify", str(copy / "results"), "--cell", str(copy / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "RESULTS_DIR: " in err and "--cell: " in err


def test_the_board_names_a_record_outside_its_grid(copy, capsys):
    path, rec = _record(copy, "random")
    fake = path.with_name("seed7.json")
    fake.write_text(json.dumps({**rec, "cell": {**rec["cell"], "seed": 7}, "grid": {**rec["grid"], "source": str(copy / "fast.yaml")}}))
    capsys.readouterr()
    assert main(["leaderboard", str(copy / "results"), "--out", str(copy / "boards")]) == 0
    out = capsys.readouterr().out
    assert f"outside its grid: {fake}: no cell of grid fast" in out
    assert out.count("outside its grid") == 1  # the grid's own records are not named


def test_a_cache_entry_reads_back_only_with_its_key_and_checksum(tmp_path: Path) -> None:
    """The one home of the scoring cache's format (`store.cache_entry`): what is written reads
    back exactly; another key, or an npz changed after its metadata, is refused."""
    from corebench.store.cache_entry import (
        read_arrays,
        read_checked,
        remove_entry,
        signal_names,
        write_entry,
    )

    npz = tmp_path / "k.npz"
    arrays = {"loss": np.arange(6, dtype=np.float32).reshape(2, 3), "correct": np.array([[True, False, True]] * 2)}
    write_entry(npz, arrays, {"key": "k", "seconds": 1.5}, tmp_path)
    got, meta = read_checked(npz, "k")
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) and got[k].dtype == arrays[k].dtype
                                           for k in arrays)
    assert meta["seconds"] == 1.5 and len(meta["checksum"]) == 32
    assert signal_names(npz) == {"loss", "correct"} and set(read_arrays(npz, ["loss", "absent"])) == {"loss"}
    with pytest.raises(ValueError, match="another key"):
        read_checked(npz, "other")
    np.savez(npz, loss=np.zeros((2, 3), np.float32))  # replaced without its metadata
    with pytest.raises(ValueError, match="checksum"):
        read_checked(npz, "k")
    remove_entry(npz)
    assert not npz.exists() and not npz.with_suffix(".json").exists()
