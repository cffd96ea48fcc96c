"""The committed boards are exactly what `make leaderboards` makes from the committed records."""

from __future__ import annotations

from pathlib import Path

import pytest

from corebench.boards.leaderboard import generate_leaderboards
from corebench.methods import facts

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / "results").is_dir(), reason="no committed result records")
def test_regenerating_the_committed_boards_changes_nothing(tmp_path):
    report = generate_leaderboards(REPO / "results", tmp_path, facts)
    assert report.n_ok > 0 and not report.skipped
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(REPO / "leaderboards") for p in (REPO / "leaderboards").rglob("*") if p.is_file()}
    assert made == committed
    for rel in sorted(made):  # every file, plots included (SVG text, no font rendering)
        assert (tmp_path / rel).read_bytes() == (REPO / "leaderboards" / rel).read_bytes(), f"{rel} differs"
