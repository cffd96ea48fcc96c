"""The README's reading of the CIFAR CPU boards cannot drift: every figure between its claims
markers is listed in tests/readme_claims.yaml with where it comes from, and recomputed here from
the committed records (`corebench.boards.board`, the boards' own numbers)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from corebench.boards.board import aggregate, build_boards, comparison_sides
from corebench.boards.significance import adjust_family, compare, prior_detectable
from corebench.core.checked import number
from corebench.methods import facts
from corebench.store.results import scan

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = yaml.safe_load((Path(__file__).parent / "readme_claims.yaml").read_text())["blocks"]
CLAIMS = [(block["grid"], claim) for block in BLOCKS for claim in block["claims"]]


def claims_block(grid: str) -> str:
    """The README's text between `<!-- claims:begin GRID ...-->` and the next `<!-- claims:end -->`."""
    text = (ROOT / "README.md").read_text()
    begin = text.index(f"<!-- claims:begin {grid} ")
    return text[text.index("-->", begin) + 3 : text.index("<!-- claims:end -->", begin)]


@cache
def boards(grid: str) -> dict:
    records, problems = scan(ROOT / "results")
    out = {}
    for board in build_boards([s for s in records if s.record.grid.name == grid], [], ROOT / "results", facts)[0]:
        aggregate(board)
        out[board.regime] = board
    return out


def comparisons(board) -> dict:
    return {(lab, f, eps): d for (lab, f), c in board.cells.items() for eps, d in c.diff.items() if d is not None and d.n >= 2}


def value_of(grid: str, fig: dict) -> float:
    """The figure, recomputed from the committed records of `grid`."""
    kind, b = fig["kind"], boards(grid).get(fig.get("regime"))
    eps = number(fig["eps"], "eps") if "eps" in fig else None
    if kind == "primary":
        p = next(p for p in b.primary if (p.method, p.against) == (fig["method"], fig["against"])
                 and (eps is None or abs(p.eps - eps) < 1e-9))
        return {"p_adjusted": p.p_adjusted, "detectable": p.detectable}.get(fig["field"]) or getattr(p.diff, fig["field"])
    if kind == "pair":
        return getattr(compare(*comparison_sides(b, fig["method"], fig["against"], fig["fraction"], eps)), fig["field"])
    if kind == "diff":
        if fig["field"] == "p_adjusted":
            return b.family.p[(fig["method"], fig["fraction"], eps)]
        return getattr(b.cells[(fig["method"], fig["fraction"])].diff[eps], fig["field"])
    if kind == "min_p_adjusted":
        return min(b.family.p.values())
    if kind == "best_robust":  # the row with the highest mean robust accuracy, collapsed rows left out
        rows = [(c.robust[eps].mean, lab) for (lab, f), c in b.cells.items() if f == fig["fraction"] and c.n and not c.collapsed]
        return max(rows)[1]
    if kind == "prior":
        return prior_detectable(fig["seeds"], fig["images"])
    if kind == "agreement":
        return b.agreement[(fig["method"], fig["fraction"])][0]
    if kind == "stability":
        return b.stability[(fig["method"], fig["fraction"])][0]
    if kind == "cell":
        c = b.full if fig["method"] == "full" else b.cells[(fig["method"], fig["fraction"])]
        return c.clean.mean if fig["metric"] == "clean" else c.robust[eps].mean
    every = {(r, k): d for r, board in boards(grid).items() for k, d in comparisons(board).items()}
    if kind == "pooled_min_bh":
        return min(adjust_family(every, "bh").p.values())
    what = fig["what"]
    if what == "comparisons":
        return len(every)
    if what == "seed_only":
        return sum(d.significant for d in every.values())
    if what == "family":
        return b.family.size
    if what in ("rows", "collapsed_rows"):
        return sum(1 for c in b.cells.values() if c.n and (what == "rows" or c.collapsed))
    if what in ("holm", "bh"):  # each board's own family, as the boards correct
        total = 0
        for bd in boards(grid).values():
            family = adjust_family({k: comparisons(bd)[k] for k in bd.family.p}, what)
            total += sum(family.significant(k) for k in family.p)
        return total
    pooled = adjust_family(every, what.removeprefix("pooled_"))
    return sum(pooled.significant(k) for k in pooled.p)


def printed(value: float, like: str) -> str:
    """`value` as the README prints `like`: its decimals, its sign, − for minus."""
    like = like.replace("−", "-")
    decimals = len(like.split(".")[1]) if "." in like else 0
    text = f"{value:+.{decimals}f}" if like[0] in "+-" else f"{value:.{decimals}f}"
    return text.replace("-", "−") if text != "-0.0" else "−0.0"


@pytest.mark.parametrize(("grid", "claim"), CLAIMS, ids=lambda c: c if isinstance(c, str) else c["text"][:40])
def test_each_readme_claim_matches_the_committed_records(grid, claim):
    if not (ROOT / "results" / grid).is_dir():
        pytest.skip(f"committed records of {grid} absent")
    assert claim["text"] in claims_block(grid), "the README no longer says this (update tests/readme_claims.yaml)"
    for fig in claim["figures"]:
        value = value_of(grid, fig)
        assert (value if isinstance(value, str) else printed(value, fig["value"])) == fig["value"], fig
        assert fig["value"] in claim["text"]


@pytest.mark.parametrize("grid", [block["grid"] for block in BLOCKS])
def test_every_figure_in_the_claims_block_is_listed(grid):
    """Each decimal figure the README prints there belongs to a listed claim."""
    listed = "\n".join(c["text"] for g, c in CLAIMS if g == grid)
    for figure in re.findall(r"[+−]?\d+\.\d+", claims_block(grid)):
        assert figure in listed, f"{figure}: a README figure without a check in tests/readme_claims.yaml"


def test_every_claims_block_of_the_readme_is_checked():
    """A claims block the YAML does not list would go unchecked."""
    marked = re.findall(r"<!-- claims:begin (\S+) ", (ROOT / "README.md").read_text())
    assert sorted(marked) == sorted(block["grid"] for block in BLOCKS)
