"""Issue 23, defects 8 and 9: boards never read their own exports, and impossible records are refused.

A record whose robust accuracy exceeds its clean accuracy (every attack counts an image only if
it is right unattacked), or that evaluated more images than the grid asks for, cannot come from
an evaluation; the schema (`record.Record`) rejects it, so no board ranks it.
"""

from __future__ import annotations

import copy
import json

import pytest

from corebench.boards.leaderboard import generate_leaderboards
from corebench.cli import main
from corebench.core.errors import ResultsError
from corebench.methods import facts
from corebench.store.record import parse_record
from corebench.store.results import write_record

from records import example_record, relpath


def _with_top(rec: dict, **metrics) -> dict:
    """`rec` with the largest ε's numbers changed at the top and in `metrics.robust`."""
    rec = copy.deepcopy(rec)
    rec["metrics"].update(metrics)
    rec["metrics"]["robust"][-1].update({k: v for k, v in metrics.items() if k in ("pgd_acc", "autoattack_acc")})
    return rec


@pytest.mark.parametrize(("change", "message"), [
    ({"autoattack_acc": 95.0}, "metrics.autoattack_acc: 95.0 is not allowed; allowed: at most the clean accuracy 90.0"),
    ({"pgd_acc": 90.5}, "metrics.pgd_acc: 90.5 is not allowed; allowed: at most the clean accuracy 90.0"),
    ({"n_eval": 451}, "metrics.n_eval: 451 is not allowed; allowed: at most 450"),
])  # fmt: skip
def test_impossible_metrics_are_refused(change, message):
    rec = example_record()  # clean 90, AutoAttack 40, 450 examples evaluated of 450 asked for
    parse_record(json.dumps(rec))
    with pytest.raises(ResultsError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_record(json.dumps(_with_top(rec, **change)))


def test_a_robust_entry_above_clean_is_refused_at_any_eps():
    rec = example_record(eps=[8 / 255, 32 / 255])
    rec["metrics"]["robust"][0]["autoattack_acc"] = 91.0
    with pytest.raises(ResultsError, match=r"metrics\.robust\[eps=0\.0313725\]\.autoattack_acc: 91\.0"):
        parse_record(json.dumps(rec))


def test_a_per_attack_number_above_clean_and_a_coreset_too_large_are_refused():
    rec = example_record()
    rec["metrics"]["autoattack_per_attack"]["apgd-t"] = 99.0
    rec["metrics"]["robust"][-1]["autoattack_per_attack"]["apgd-t"] = 99.0
    with pytest.raises(ResultsError, match="autoattack_per_attack.apgd-t: 99.0"):
        parse_record(json.dumps(rec))
    rec = example_record()
    rec["coreset"]["size"] = rec["coreset"]["n_train"] + 1
    with pytest.raises(ResultsError, match="coreset.size: 1348 is not allowed"):
        parse_record(json.dumps(rec))


def test_an_impossible_record_is_not_ranked(tmp_path):
    results = tmp_path / "results"
    rec = _with_top(example_record(grid="g"), autoattack_acc=99.0)
    write_record(results / relpath(rec), rec)
    report = generate_leaderboards(results, tmp_path / "out", facts)
    assert report.n_ok == 0 and "99.00" not in "".join(p.read_text() for p in report.pages)
    assert "at most the clean accuracy" in report.skipped[0][1]


@pytest.mark.parametrize("where", ["inside", "same"])
def test_a_board_folder_inside_the_results_is_refused(tmp_path, capsys, where):
    results = tmp_path / "results"
    rec = example_record(grid="g")
    write_record(results / relpath(rec), rec)
    out = results / "boards" if where == "inside" else results
    assert main(["leaderboard", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out: " in err and "a folder outside RESULTS_DIR" in err
    assert not (results / "boards").exists()
    assert main(["leaderboard", str(results), "--out", str(tmp_path / "boards"), "--strict"]) == 0
    assert main(["leaderboard", str(results), "--out", str(tmp_path / "boards"), "--strict"]) == 0
