"""What a board claims about differences: intervals over seeds and images when records keep
per-image outcomes, † only after the family's correction, declared primary comparisons apart."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from corebench.boards.board import aggregate, build_boards
from corebench.boards.exports import csv_text
from corebench.boards.page import render_board
from corebench.boards.stats import paired_components
from corebench.cells.grid import parse_grid
from corebench.core.errors import ConfigError
from corebench.methods import facts

from records import as_stored, example_record, with_outcomes

METHODS = ("random", "easycore", "moderate", "grand", "el2n", "ccs")


def board_of(records, tmp_path):
    (board,), _ = build_boards([as_stored(rec, tmp_path) for rec in records], [], tmp_path, facts)
    aggregate(board)
    return board


def seed_only_records(grid: dict | None = None):
    """Every method beats random by 2, 3 and 4 points on seeds 0, 1, 2: p ≈ 0.035 each (t = 5.2, df 2)."""
    out = []
    for seed in range(3):
        for method in METHODS:
            acc = 30.0 + (0 if method == "random" else 2 + seed) + (seed if method != "random" else seed)
            rec = example_record(method=method, seed=seed, autoattack_acc=acc)
            if grid:
                rec["grid"].update(grid)
            out.append(rec)
    return out


def test_daggers_only_after_holm_and_bh_as_the_grids_option(tmp_path):
    board = board_of(seed_only_records(), tmp_path)
    diffs = [board.cells[(m, 0.3)].diff[board.protocol.eps[0]] for m in METHODS[1:]]
    assert all(d.significant and d.p == pytest.approx(0.0355, abs=1e-3) for d in diffs)  # each alone: p < 0.05
    assert board.family.size == 5 and board.family.method == "holm"
    assert not any(board.family.significant(k) for k in board.family.p)  # Holm: 5 × 0.0355 > 0.05
    page = render_board(board, plot_name=None, csv_name="c.csv", model_info_dir="m")
    assert "†: significant after Holm correction across this board's family of 5 exploratory comparisons" in page
    assert "+3.00 [+0.52, +5.48] (n=3)" in page and "+3.00†" not in page
    assert "**Seed-only intervals**" in page  # these records keep no per-image outcomes

    bh = board_of(seed_only_records({"correction": "bh"}), tmp_path)
    assert all(bh.family.significant(k) for k in bh.family.p)  # BH: five equal p stay at 0.0355
    page = render_board(bh, plot_name=None, csv_name="c.csv", model_info_dir="m")
    assert "+3.00†" in page and "Benjamini–Hochberg correction" in page


def test_the_csv_keeps_the_raw_and_the_adjusted_p(tmp_path):
    board = board_of(seed_only_records(), tmp_path)
    header, *rows = csv_text(board).splitlines()
    cols = header.split(",")
    row = dict(zip(cols, next(r for r in rows if ",easycore," in r).split(","), strict=False))
    assert (row["diff_basis"], row["correction"], row["family_size"], row["significant"]) == ("seeds", "holm", "5", "false")
    assert float(row["p_value"]) == pytest.approx(0.0355, abs=1e-3)
    assert float(row["p_adjusted"]) == pytest.approx(min(1.0, 5 * float(row["p_value"])), abs=1e-3)


def test_records_with_per_image_outcomes_get_intervals_over_seeds_and_images(tmp_path):
    rng = np.random.default_rng(0)
    ease = rng.normal(size=200)
    outcomes, records = {}, []
    for seed in range(3):
        for method, shift in (("random", 0.0), ("easycore", 0.4)):
            robust = ease + 0.8 * rng.normal(size=200) + shift > 0.5
            outcomes[(method, seed)] = robust
            records.append(with_outcomes(example_record(method=method, seed=seed), np.ones(200, bool), robust))
    board = board_of(records, tmp_path)
    d = board.cells[("easycore", 0.3)].diff[board.protocol.eps[0]]
    want = paired_components(np.stack([outcomes[("easycore", s)] for s in range(3)]),
                             np.stack([outcomes[("random", s)] for s in range(3)]))  # fmt: skip
    assert d.basis == "seeds+images" and (d.mean, d.low, d.high, d.p) == pytest.approx((want.mean, want.low, want.high, want.p))
    page = render_board(board, plot_name=None, csv_name="c.csv", model_info_dir="m")
    assert "**Seed-only intervals**" not in page


def test_declared_primary_comparisons_come_first_and_leave_the_family(tmp_path):
    eps = example_record()["config"]["evaluation"]["eps"][0]
    primary = [{"method": "easycore", "against": "random", "fraction": 0.3, "regime": "standard", "eps": eps},
               {"method": "easycore", "against": "ccs", "fraction": 0.3, "regime": "standard", "eps": eps}]
    board = board_of(seed_only_records({"primary": primary}), tmp_path)
    assert board.family.size == 4  # easycore − random is declared: not in the exploratory family
    vs_random = next(p for p in board.primary if p.against == "random")
    assert vs_random.diff.mean == pytest.approx(3.0) and vs_random.p_adjusted == pytest.approx(2 * vs_random.diff.p)
    assert 0 < vs_random.detectable < 10
    vs_ccs = next(p for p in board.primary if p.against == "ccs")
    assert vs_ccs.diff.mean == pytest.approx(0.0)
    page = render_board(board, plot_name=None, csv_name="c.csv", model_info_dir="m")
    first_accuracy = re.search(r"^## .* accuracy \(%\)", page, re.M).start()  # headed by the attacks that ran
    assert page.index("## Primary comparisons (declared in the grid)") < first_accuracy
    assert "| easycore − random | 30%, ε = 32/255 | +3.00 [+0.52, +5.48] (n=3, seeds only) | 0.0351 |" in page


def grid_with(**changes) -> dict:
    grid = yaml.safe_load(
        "{name: g, datasets: [digits], architectures: [resnet18], fractions: [0.1, 0.3], methods: [random, easycore],"
        " regimes: [standard, trades], regime_fractions: {trades: [0.1]}, evaluation: {eps: [2/255, 8/255]}}"
    )
    return {**grid, **changes}


def test_a_grid_declares_primary_comparisons_and_its_correction():
    spec = parse_grid(grid_with(primary=[{"method": "easycore", "fraction": 0.1, "regime": "trades", "eps": "8/255"}],
                                correction="bh"))  # fmt: skip
    (c,) = spec.primary
    assert (c.method, c.against, c.fraction, c.regime, c.eps, spec.correction) == ("easycore", "random", 0.1, "trades", 8 / 255, "bh")
    assert parse_grid(grid_with()).correction == "holm" and parse_grid(grid_with()).primary == ()
    bad = {"method": "easycore", "fraction": 0.1, "regime": "trades", "eps": "8/255"}
    for change, message in (
        ({"method": "kcenter"}, r"^primary\[0\].method: 'kcenter' is not allowed; allowed: easycore, random$"),
        ({"against": "ccs"}, r"^primary\[0\].against: 'ccs' is not allowed"),
        ({"fraction": 0.3}, r"^primary\[0\].fraction: 0.3 is not allowed; allowed: 0.1$"),
        ({"regime": "pgd_at"}, r"^primary\[0\].regime: 'pgd_at' is not allowed"),
        ({"eps": "4/255"}, r"^primary\[0\].eps: .* allowed: one of evaluation.eps$"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_grid(grid_with(primary=[{**bad, **change}]))
    with pytest.raises(ConfigError, match="^correction: 'bonferroni' is not allowed; allowed: holm, bh"):
        parse_grid(grid_with(correction="bonferroni"))
