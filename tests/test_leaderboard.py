"""Leaderboards: golden pages, byte-identical regeneration, protocol separation, statistics.

Regenerate the golden files after an intended change of the pages with
`COREBENCH_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_leaderboard.py` and review
the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import pytest

from corebench.errors import ResultsError
from corebench.leaderboard import _average_ranks, generate_leaderboards, render_summary
from corebench.plots import PlotSpec, Series, render_png, rendering
from corebench.results import load, write_record
from corebench.stats import paired_diff, t_critical

from records import example_record, relpath

GOLDEN = Path(__file__).parent / "golden" / "leaderboards"
REGEN = os.environ.get("COREBENCH_REGEN_GOLDEN") == "1"
PAGE = Path("golden") / "digits__resnet18__standard.md"

# AutoAttack accuracy per method, fraction and seed (seed 2 of moderate at 30% failed).
# Chosen so that: easycore vs random is not significant at 10% but is at 30%; easycore and
# moderate tie for best at 10% (31.00); moderate has a failed seed at 30%.
ROBUST = {
    ("random", 0.1): (30.0, 31.2, 29.4),
    ("random", 0.3): (38.0, 37.1, 38.6),
    ("easycore", 0.1): (31.0, 30.2, 31.8),
    ("easycore", 0.3): (41.5, 40.9, 42.3),
    ("moderate", 0.1): (31.5, 30.5, 31.0),
    ("moderate", 0.3): (39.0, 38.2, None),
    ("full", 1.0): (47.0, 46.4, 47.3),
}


def golden_records() -> list[dict]:
    """The fixed synthetic records behind the golden board (2 methods + random + full)."""
    out = []
    for (method, fraction), values in sorted(ROBUST.items()):
        for seed, acc in enumerate(values):
            if acc is None:
                rec = example_record(grid="golden", method=method, fraction=fraction, seed=seed,
                                     error="RuntimeError: CUDA out of memory")  # fmt: skip
            else:
                clean = round(90.0 + 10 * fraction - 0.1 * seed, 2)
                rec = example_record(grid="golden", method=method, fraction=fraction, seed=seed,
                                     autoattack_acc=acc, clean_acc=clean)  # fmt: skip
            out.append(rec)
    return out


def write_golden_results(root: Path) -> Path:
    """Write the golden records plus one malformed file (an accuracy stored as a string)."""
    for rec in golden_records():
        write_record(root / relpath(rec), rec)
    bad = example_record(grid="golden", method="random", fraction=0.1, seed=3)
    bad["metrics"]["clean_acc"] = "91.2"
    path = root / relpath(bad)
    path.write_text(json.dumps(bad, sort_keys=True, indent=1))
    return path


def _text_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".png"
    }


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("golden")
    results, out = root / "results", root / "boards"
    write_golden_results(results)
    report = generate_leaderboards(results, out)
    return results, out, report


# --------------------------------------------------------------------------- golden files


def test_boards_match_the_golden_files(golden_run) -> None:
    _, out, _ = golden_run
    produced = _text_files(out)
    if REGEN:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, data in produced.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(data)
    golden = _text_files(GOLDEN)
    assert sorted(produced) == sorted(golden), "generated files differ from tests/golden"
    for rel in golden:
        if produced[rel] != golden[rel]:
            diff = "\n".join(
                difflib.unified_diff(
                    golden[rel].decode().splitlines(), produced[rel].decode().splitlines(),
                    f"golden/{rel}", f"generated/{rel}", lineterm="",
                )
            )  # fmt: skip
            pytest.fail(f"{rel} differs from the golden file (COREBENCH_REGEN_GOLDEN=1 rewrites):\n{diff}")


def test_golden_board_content(golden_run) -> None:
    """What the golden page must say, independent of its exact layout."""
    _, out, report = golden_run
    page = (out / PAGE).read_text()
    assert report.pages == [out / PAGE] and report.n_ok == 20 and report.n_failed == 1
    assert [p.name for p, _ in report.skipped] == ["seed3.json"]
    # best in each column bold; a tie marks both
    assert "| easycore          | **31.00** ± 0.80 (n=3) | **41.57** ± 0.70 (n=3)" in page
    assert "| moderate          | **31.00** ± 0.50 (n=3) | 38.60 ± 0.57 (n=2, 1 failed)" in page
    # full data as a reference line, random marked as the baseline
    assert "**Full-data reference** (100% of the training set, method `full`): AutoAttack accuracy 46.90 ± 0.46 (n=3)" in page
    assert "random (baseline)" in page
    # paired differences: 10% not significant, 30% significant (diffs 3.5, 3.8, 3.7)
    assert "| easycore | +0.80 [-3.44, +5.04] (n=3) | +3.67† [+3.29, +4.05] (n=3) |" in page
    # ranking: easycore first (ranks 1.5 and 1), gains over random
    assert "| 1   | easycore          | 1.25" in page
    # plot linked relatively, exports beside the page
    assert "![AutoAttack accuracy against fraction kept](digits__resnet18__standard.png)" in page
    assert (out / "golden" / "digits__resnet18__standard.png").is_file()
    assert (out / "golden" / "digits__resnet18__standard.csv").is_file()
    # provenance footer
    assert "- Grid file: `golden` from `configs/golden.yaml`" in page
    assert "ε = 32/255 (0.1255), AutoAttack `custom` (apgd-ce, apgd-t), first 450 test examples" in page
    assert "- Cells: 20 finished, 1 failed; 1 malformed file skipped:" in page
    assert "metrics.clean_acc: '91.2' is not allowed; allowed: a number in [0, 100]" in page
    assert "| moderate | 30%        | 2      | RuntimeError: CUDA out of memory |" in page


def test_robustbench_export_follows_robustbench_format(golden_run) -> None:
    _, out, _ = golden_run
    path = out / "golden/model_info/digits/Linf/easycore__f0.3__resnet18__standard.json"
    info = json.loads(path.read_text())
    assert list(info)[:12] == [
        "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
        "architecture", "eps", "clean_acc", "reported", "autoattack_acc",
    ]  # fmt: skip
    assert info["eps"] == "32/255"
    assert info["autoattack_acc"] == "41.57" and info["clean_acc"] == "92.9"  # strings, as RobustBench
    assert info["link"] == "golden/digits__resnet18__standard.md"
    assert (out / "golden/model_info/digits/Linf/full__f1__resnet18__standard.json").is_file()


def test_index_lists_every_board_with_best_methods(golden_run) -> None:
    _, out, _ = golden_run
    index = (out / "README.md").read_text()
    assert "[digits · resnet18 · standard](golden/digits__resnet18__standard.md)" in index
    assert "10%: easycore = moderate (31.00); 30%: easycore (41.57)" in index
    assert "## Skipped files" in index and "random/f0.1/seed3.json" in index


# --------------------------------------------------------------------------- determinism


def test_regeneration_is_byte_identical(golden_run, tmp_path: Path) -> None:
    results, out, _ = golden_run
    first = _all_files(out)
    generate_leaderboards(results, tmp_path / "again")
    assert _all_files(tmp_path / "again") == first  # PNGs included
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    generate_leaderboards(results, out)  # into the same folder: nothing changes
    assert _all_files(out) == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def render_all(specs: list[PlotSpec], workers: int) -> list[bytes]:
    with rendering(specs, workers) as wait:
        return wait()


def test_png_is_a_pure_function_of_its_spec() -> None:
    a = PlotSpec("a", "acc (%)", (Series("m", (0.1, 0.3), (30.0, 40.0), (1.0, float("nan"))),), (50.0, 0.5))
    b = PlotSpec("b", "acc (%)", (Series("r", (0.01, 0.5), (10.0, 20.0), (0.5, 0.5), reference=True),))
    png = render_png(a)
    assert png.startswith(b"\x89PNG") and b"Software" not in png and b"matplotlib" not in png
    assert render_all([b, a, b, a], workers=1)[1] == png
    assert render_all([b, a, b, a], workers=2) == render_all([b, a, b, a], workers=1)  # forked


# --------------------------------------------------------------------------- protocols & edge cases


def test_protocols_are_never_mixed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in (0, 1):
        for method, acc in (("random", 30.0), ("easycore", 33.0)):
            wide = example_record(grid="p", method=method, seed=seed, autoattack_acc=acc)
            narrow = example_record(grid="p", method=method, seed=seed, autoattack_acc=acc + 20, eps=8 / 255)
            write_record(results / "eps32" / relpath(wide), wide)  # one cell, two runs: two folders
            write_record(results / "eps8" / relpath(narrow), narrow)
    report = generate_leaderboards(results, tmp_path / "out")
    names = sorted(p.name for p in report.pages)
    assert names == [
        "digits__resnet18__standard__linf-eps32_255-aa-custom-apgd-ce+apgd-t-n450.md",
        "digits__resnet18__standard__linf-eps8_255-aa-custom-apgd-ce+apgd-t-n450.md",
    ]
    wide_page, narrow_page = (p.read_text() for p in sorted(report.pages))
    assert "ε = 32/255" in wide_page and "ε = 8/255" not in wide_page
    assert "ε = 8/255" in narrow_page
    assert "**33.00** ± 0.00 (n=2)" in wide_page and "53.00" not in wide_page
    assert "**53.00** ± 0.00 (n=2)" in narrow_page and "33.00" not in narrow_page
    summary = render_summary(load(results))
    assert summary.count("p · digits · resnet18 · standard") == 2 and "eps=" in summary


def test_single_seed_claims_no_significance(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for method, acc in (("random", 30.0), ("easycore", 40.0)):
        rec = example_record(grid="one", method=method, autoattack_acc=acc)
        write_record(results / relpath(rec), rec)
    page = generate_leaderboards(results, tmp_path / "out").pages[0].read_text()
    assert "Every comparison here has a single seed: no significance is claimed." in page
    assert "| easycore | +10.00 (n=1) |" in page
    assert "**Full-data reference**: none in the results." in page


def test_strict_raises_naming_the_malformed_file(tmp_path: Path) -> None:
    bad = write_golden_results(tmp_path / "results")
    with pytest.raises(ResultsError, match=rf"^{bad}: metrics\.clean_acc"):
        generate_leaderboards(tmp_path / "results", tmp_path / "out", strict=True)
    assert not (tmp_path / "out").exists()


def test_a_copied_record_is_skipped_and_a_duplicate_cell_is_an_error(tmp_path: Path) -> None:
    """`cp seed0.json "seed0 copy.json"` plus an edit must not reach the board, and two
    records of one cell are never resolved by picking one."""
    results = tmp_path / "results"
    rec = example_record(grid="d", autoattack_acc=30.0)
    write_record(results / relpath(rec), rec)
    edited = {**rec, "metrics": {**rec["metrics"], "autoattack_acc": 99.0}}
    write_record((results / relpath(rec)).with_name("seed0 copy.json"), edited)
    report = generate_leaderboards(results, tmp_path / "out")
    assert report.n_ok == 1 and "99.00" not in report.pages[0].read_text()
    ((path, reason),) = report.skipped
    assert path.name == "seed0 copy.json" and "belong at .../d/digits/resnet18/standard/random/f0.3/seed0.json" in reason
    write_record(results / "again" / relpath(rec), edited)
    with pytest.raises(ResultsError, match="a second record of the cell in") as err:
        generate_leaderboards(results, tmp_path / "out")
    assert str(results / relpath(rec)) in str(err.value) and str(results / "again" / relpath(rec)) in str(err.value)


def test_stale_generated_files_are_removed_and_others_kept(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "out"
    rec = example_record(grid="s", autoattack_acc=30.0)
    other = example_record(grid="s", autoattack_acc=31.0, eps=8 / 255)
    write_record(results / relpath(rec), rec)
    other_path = results / "other" / relpath(other)
    write_record(other_path, other)
    first = generate_leaderboards(results, out)
    assert len(first.pages) == 2
    (out / "notes.txt").write_text("mine")
    other_path.unlink()
    second = generate_leaderboards(results, out)
    assert [p.name for p in second.pages] == ["digits__resnet18__standard.md"]
    assert sorted(p.name for p in out.joinpath("s").glob("*.md")) == ["digits__resnet18__standard.md"]
    assert (out / "notes.txt").read_text() == "mine"


def test_empty_results_give_an_index_only(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    report = generate_leaderboards(tmp_path / "results", tmp_path / "out")
    assert report.pages == [] and "No result records found." in report.index.read_text()
    assert render_summary(load(tmp_path / "results")) == "No result records."


def test_render_summary_table(golden_run) -> None:
    results, _, _ = golden_run
    text = render_summary(load(results))
    assert text.splitlines()[0] == (
        "golden · digits · resnet18 · standard: AutoAttack accuracy (%) — 1 failed cell"
    )
    assert "| easycore         | 31.0 ± 0.8 | 41.6 ± 0.7 |" in text
    assert "| full data (100%) | 46.9 ± 0.5 | 46.9 ± 0.5 |" in text


# --------------------------------------------------------------------------- statistics


def test_paired_t_interval_known_answers() -> None:
    assert t_critical(2) == pytest.approx(4.302653, abs=1e-6)
    wide = paired_diff([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])  # d = 1, 2, 3: mean 2, sd 1
    assert wide.mean == pytest.approx(2.0)
    assert wide.low == pytest.approx(2 - 4.302653 / 3**0.5, abs=1e-6)
    assert not wide.significant
    tight = paired_diff([3.0, 3.1, 2.9], [1.0, 1.0, 1.0])
    assert tight.significant and tight.n == 3
    single = paired_diff([5.0], [1.0])
    assert single.n == 1 and single.low is None and not single.significant


def test_average_ranks_share_ties() -> None:
    assert _average_ranks({"a": 1.0, "b": 1.0, "c": 0.5, "d": 2.0}) == {"d": 1.0, "a": 2.5, "b": 2.5, "c": 4.0}
