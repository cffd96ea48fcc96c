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
CLAIMS = yaml.safe_load((Path(__file__).parent / "readme_claims.yaml").read_text())


def claims_block() -> str:
    text = (ROOT / "README.md").read_text()
    begin, end = text.index("<!-- claims:begin"), text.index("<!-- claims:end -->")
    return text[text.index("-->", begin) + 3 : end]


@cache
def boards() -> dict:
    records, problems = scan(ROOT / "results")
    out = {}
    for board in build_boards([r for r in records if r["grid"]["name"] == CLAIMS["grid"]], [], ROOT / "results", facts)[0]:
        aggregate(board)
        out[board.regime] = board
    return out


def comparisons(board) -> dict:
    return {(lab, f, eps): d for (lab, f), c in board.cells.items() for eps, d in c.diff.items() if d is not None and d.n >= 2}


def value_of(fig: dict) -> float:
    """The figure, recomputed from the committed records."""
    kind, b = fig["kind"], boards().get(fig.get("regime"))
    eps = number(fig["eps"], "eps") if "eps" in fig else None
    if kind == "primary":
        p = next(p for p in b.primary if (p.method, p.against) == (fig["method"], fig["against"]))
        return {"p_adjusted": p.p_adjusted, "detectable": p.detectable}.get(fig["field"]) or getattr(p.diff, fig["field"])
    if kind == "pair":
        return getattr(compare(*comparison_sides(b, fig["method"], fig["against"], fig["fraction"], eps)), fig["field"])
    if kind == "diff":
        if fig["field"] == "p_adjusted":
            return b.family.p[(fig["method"], fig["fraction"], eps)]
        return getattr(b.cells[(fig["method"], fig["fraction"])].diff[eps], fig["field"])
    if kind == "prior":
        return prior_detectable(fig["seeds"], fig["images"])
    if kind == "stability":
        return b.stability[(fig["method"], fig["fraction"])][0]
    if kind == "cell":
        c = b.full if fig["method"] == "full" else b.cells[(fig["method"], fig["fraction"])]
        return c.clean.mean if fig["metric"] == "clean" else c.robust[eps].mean
    every = {(r, k): d for r, board in boards().items() for k, d in comparisons(board).items()}
    if kind == "pooled_min_bh":
        return min(adjust_family(every, "bh").p.values())
    what = fig["what"]
    if what == "comparisons":
        return len(every)
    if what == "seed_only":
        return sum(d.significant for d in every.values())
    if what == "family":
        return b.family.size
    if what in ("holm", "bh"):  # each board's own family, as the boards correct
        total = 0
        for bd in boards().values():
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


@pytest.mark.skipif(not (ROOT / "results" / "cifar10_cpu").is_dir(), reason="committed records absent")
@pytest.mark.parametrize("claim", CLAIMS["claims"], ids=lambda c: c["text"][:40])
def test_each_readme_claim_matches_the_committed_records(claim):
    assert claim["text"] in claims_block(), "the README no longer says this (update tests/readme_claims.yaml)"
    for fig in claim["figures"]:
        assert printed(value_of(fig), fig["value"]) == fig["value"], fig
        assert fig["value"] in claim["text"]


def test_every_figure_in_the_claims_block_is_listed():
    """Each decimal figure the README prints there belongs to a listed claim."""
    listed = "\n".join(c["text"] for c in CLAIMS["claims"])
    for figure in re.findall(r"[+−]?\d+\.\d+", claims_block()):
        assert figure in listed, f"{figure}: a README figure without a check in tests/readme_claims.yaml"
