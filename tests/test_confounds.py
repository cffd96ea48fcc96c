"""Confounds a board must control (issue 18): degenerate seeds, classes covered, budget,
stability at equal footing, cost by need."""

from __future__ import annotations

from pathlib import Path

import pytest

from corebench.boards.board import aggregate, build_boards, degenerate, entry_of
from corebench.boards.page import render_board
from corebench.core.errors import ResultsError
from corebench.core.protocol import Protocol
from corebench.methods import facts
from corebench.store.record import parse_record

from records import as_stored, example_record, relpath


def _board(tmp_path: Path, records: list[dict]):
    (board,), _ = build_boards([as_stored(rec, tmp_path) for rec in records], [], tmp_path, facts)
    aggregate(board)
    return board


def _page(board) -> str:
    return render_board(board, plot_name=None, csv_name="c.csv", model_info_dir="m")


def _rec(method: str, seed: int, clean: float, robust: float, fraction: float = 0.1, **extra) -> dict:
    rec = example_record(grid="c", method=method, fraction=fraction, seed=seed, clean_acc=clean,
                         autoattack_acc=robust, pgd_acc=min(robust + 1.5, clean))  # a valid record: robust ≤ clean
    rec["coreset"]["class_histogram"] = [10] * 10
    for key, value in extra.items():
        rec[key] = value
    return rec


def _entry(rec: dict):
    return entry_of(as_stored(rec, "/x"), facts)


def test_one_class_predicted_for_most_images_is_degenerate_whatever_the_accuracy() -> None:
    rec = _rec("el2n", 0, 40.0, 20.0)
    rec["metrics"]["predicted_histogram"] = [300, 50, 50, 50, 0, 0, 0, 0, 0, 0]  # 300/450 in class 0
    assert degenerate(_entry(rec), 10) == "class 0 predicted for 67% of the images"
    rec["metrics"]["predicted_histogram"] = [225, 225, 0, 0, 0, 0, 0, 0, 0, 0]  # exactly half: not more
    assert degenerate(_entry(rec), 10) is None


def test_without_a_histogram_a_seed_at_chance_is_degenerate() -> None:
    assert degenerate(_entry(_rec("el2n", 0, 15.0, 14.0)), 10) == "clean accuracy 15.0% ≤ 1.5× chance (15.0%)"
    assert degenerate(_entry(_rec("el2n", 0, 15.5, 14.0)), 10) is None


def test_a_histogram_that_does_not_sum_to_n_eval_is_refused() -> None:
    import json

    rec = _rec("el2n", 0, 40.0, 20.0)
    rec["metrics"]["predicted_histogram"] = [1] * 10
    with pytest.raises(ResultsError, match="metrics.predicted_histogram: sums to 10"):
        parse_record(json.dumps(rec))


def test_one_degenerate_seed_in_three_marks_the_cell_though_the_mean_is_above_chance(tmp_path: Path) -> None:
    # el2n: seeds at 12, 30, 30 % clean (mean 24 %: the old mean rule did not flag it)
    records = [_rec("random", s, 30.0, 20.0 + s) for s in range(3)]
    records += [_rec("el2n", s, c, min(c, 30.0 + s / 10)) for s, c in enumerate((12.0, 30.0, 30.0))]
    board = _board(tmp_path, records)
    cell = board.cells[("el2n", 0.1)]
    assert cell.collapsed and cell.n_degenerate == 1 and cell.n == 3
    assert ("el2n", 0.1) not in board.rank[board.protocol.eps[0]]
    page = _page(board)
    assert "(n=3) ‡1/3" in page
    assert "| el2n     | 10%        | 0      | clean accuracy 12.0% ≤ 1.5× chance (15.0%) |" in page
    assert "1 seed of 6 finished flagged as degenerate" in page
    # seed 0's robust accuracy is at most its clean one (12 %): a record may not claim more
    assert "| el2n     | +3.00 [-20.70, +26.70] (n=3) ‡1/3 |" in page  # no † on a collapsed cell


def test_classes_covered_counts_classes_with_five_samples_and_the_largest_share(tmp_path: Path) -> None:
    from corebench.boards.coresets import classes_covered

    assert classes_covered((46, 30, 20, 4, 0, 0, 0, 0, 0, 0)) == (3, 0.46)
    records = [_rec("random", s, 30.0, 20.0) for s in range(2)]
    records += [_rec("el2n", s, 30.0, 20.0) for s in range(2)]
    records[2]["coreset"]["class_histogram"] = [56, 30, 9, 5, 0, 0, 0, 0, 0, 0]  # 4 classes, 56 %
    records[3]["coreset"]["class_histogram"] = [42, 20, 20, 10, 4, 4, 0, 0, 0, 0]  # 4 classes, 42 %
    page = _page(_board(tmp_path, records))
    section = page.split("## Classes covered")[1].split("## ")[0]
    assert "| el2n     | 4 (42–56%) |" in section
    assert "| random   | 10 (10%)   |" in section


def test_every_builtin_method_takes_class_balanced_and_cites_its_default() -> None:
    from dataclasses import fields

    from corebench.methods.registry import get_method_class, list_methods

    for name in list_methods():
        cls = get_method_class(name)
        assert "class_balanced" in {f.name for f in fields(cls.Params)}, name
        default = cls.Params().class_balanced
        assert cls.class_balanced_source.startswith("on: " if default else "off: "), (name, cls.class_balanced_source)


def test_scoring_need_charges_only_what_the_signals_need() -> None:
    from corebench.methods import create_method
    from corebench.methods.base import ScoringNeed, scoring_need

    snaps = (0, 1)
    assert scoring_need(create_method("grand", n_runs=3), 10, snaps) == ScoringNeed(3, 0, 1)  # at init
    assert scoring_need(create_method("el2n"), 10, snaps) == ScoringNeed(1, 1, 2)  # snapshots 0 and 1
    assert scoring_need(create_method("easycore"), 10, snaps) == ScoringNeed(1, 10, 10)  # eval pass per epoch
    assert scoring_need(create_method("uncertainty"), 10, snaps) == ScoringNeed(1, 10, 1)  # final model
    assert scoring_need(create_method("random"), 10, snaps) == ScoringNeed(0, 0, 0)


def test_the_cost_table_charges_grand_at_init_no_epochs_of_the_run_it_shares(tmp_path: Path) -> None:
    records = []
    for method in ("random", "grand", "easycore"):
        rec = _rec(method, 0, 30.0, 20.0)
        if method != "random":  # both read one shared 10-epoch run of 12 s (an older record: no need recorded)
            rec["method_options"] = {"class_balanced": False, "direction": "hardest", "epoch": 0, "n_runs": 1,
                                     "params": "all"} if method == "grand" else rec["method_options"]
            rec["config"]["scoring"]["snapshot_epochs"] = [0, 1]
        records.append(rec)
    board = _board(tmp_path, records)
    assert (board.cost["grand"].scoring_epochs, board.cost["grand"].scoring_passes, board.cost["grand"].scoring_s) == (0, 1, 0)
    assert (board.cost["easycore"].scoring_epochs, board.cost["easycore"].scoring_s) == (10, 12.0)
    records[1]["cost"]["scoring_runs"][0].update(epochs_needed=2, passes_needed=3)  # recorded: used as is
    board = _board(tmp_path, records)
    assert (board.cost["grand"].scoring_epochs, board.cost["grand"].scoring_passes) == (2, 3)
    assert board.cost["grand"].scoring_s == pytest.approx(2.4)


def test_the_budget_table_shows_steps_against_full_data_fit_and_the_references_budget(tmp_path: Path) -> None:
    records = [_rec("full", 0, 80.0, 10.0, fraction=1.0), _rec("random", 0, 40.0, 20.0), _rec("ccs", 0, 40.0, 30.0)]
    for rec, steps in zip(records, (110, 11, 11), strict=True):
        rec["cost"]["train_steps"] = steps
    page = _page(_board(tmp_path, records))
    section = page.split("## Training budget")[1].split("\n## ")[0]
    assert "as a share of the full-data reference's 110" in section and "(full data: 0.12)" in section
    assert "| ccs      | 11 (0.10×), 0.75 | steps: the CCS reference `train.py --iterations 40000`" in section


def test_every_builtin_method_says_how_its_reference_trains() -> None:
    from corebench.methods.registry import get_method_class, list_methods

    for name in list_methods():
        text = get_method_class(name).reference_budget
        assert text.split(":")[0] in ("epochs", "steps", "UNVERIFIED", "none of its own"), (name, text)


def _stability(name: str, fraction: float = 0.3, **params):
    import numpy as np

    from corebench.methods import create_method, run_selection
    from corebench.methods.testing import fake_context
    from corebench.selection.stability import selection_stability

    method = create_method(name, **params)
    ctx = fake_context(method, n=400, seed=5)
    kept = run_selection(method, ctx, fraction)
    block, single = selection_stability(method, ctx, fraction, kept)
    assert single.size == kept.size and np.all(np.diff(single) > 0)
    return block, kept, single


def test_a_method_averaging_runs_is_also_measured_on_one_run() -> None:
    block, kept, single = _stability("el2n", n_runs=3)
    assert block["runs_averaged"] == 3 and single is not kept
    assert -1 <= block["single_run_spearman"] <= 1 and 0 <= block["single_run_jaccard"] <= 1
    assert block["own_randomness_jaccard"] == 1.0 and block["boundary_ties"] == 1  # continuous scores
    block, kept, single = _stability("el2n")  # one run: its selection is its single-run selection
    assert single is kept and block["single_run_spearman"] is None and block["single_run_jaccard"] is None


def test_ties_and_draws_by_design_show_as_own_randomness() -> None:
    block, _, _ = _stability("forgetting")  # integer counts: many samples tie at the boundary
    assert block["boundary_ties"] > 1 and block["own_randomness_jaccard"] < 1
    block, _, _ = _stability("ccs", hard_cutoff=0.0)  # uniform draws inside its strata
    assert block["own_randomness_jaccard"] < 1 and block["boundary_ties"] is None
    block, _, _ = _stability("random")
    assert block["own_randomness_jaccard"] < 0.5


def test_the_board_compares_single_run_selections_across_seeds(tmp_path: Path) -> None:
    import numpy as np

    from corebench.store.results import write_indices

    records = []
    for seed in range(2):
        rec = _rec("el2n", seed, 40.0, 20.0, fraction=0.5)
        rec["stability"] = {"runs_averaged": 3, "single_run_indices_file": f"seed{seed}.single_run.indices.npy",
                            "single_run_spearman": 0.5 + seed / 10, "single_run_jaccard": 0.4,
                            "own_randomness_jaccard": 1.0, "boundary_ties": 1}
        records.append(rec)
    board_records = [*records, _rec("random", 0, 40.0, 20.0, fraction=0.5)]
    for seed, rec in enumerate(records):
        write_indices((tmp_path / relpath(rec)).with_name(f"seed{seed}.single_run.indices.npy"), np.arange(seed, seed + 4))
    (board,), _ = build_boards([as_stored(rec, tmp_path) for rec in board_records], [], tmp_path, facts)
    aggregate(board)
    fair = board.fair_stability[("el2n", 0.5)]
    assert fair.jaccard == (3 / 5, 1) and fair.spearman == pytest.approx(0.55) and fair.runs_averaged == 3
    page = _page(board)
    assert "| el2n     | J 0.60 · ρ 0.55 · own 1.00 · ties 1 · runs 3 |" in page


def test_titles_name_a_reduced_attack_and_keep_autoattack_for_the_standard_one() -> None:
    def title(**autoattack) -> str:
        evaluation = {"norm": "Linf", "eps": [8 / 255], "n_examples": 100, "pgd_steps": 20, "autoattack": autoattack}
        return Protocol.of(evaluation).attack_title

    assert title(version="standard") == "AutoAttack"
    assert title(version="standard", apgd_iterations=20) == "APGD-CE + APGD-T (9 targets) + FAB-T (9 targets) + Square"
    assert title(version="custom", attacks=["apgd-ce", "apgd-t"], target_classes=3) == "APGD-CE + APGD-T (3 targets)"
    assert title(version="rand") == "APGD-CE + APGD-DLR"
    assert title(version="standard", enabled=False) == "PGD-20"
