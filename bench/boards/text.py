"""How a board's numbers are written as text: accuracies, intervals, differences, marks and
settings, in fixed formats (2 decimals for accuracies), so the same records give the same bytes."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tabulate import tabulate

from corebench.boards.board import (
    Board,
    CellStats,
)
from corebench.boards.stats import Interval
from corebench.core.protocol import eps_text
from corebench.core.spec import (
    AttackConfig,
    EvaluationConfig,
    ScoringConfig,
    TrainingConfig,
    to_jsonable,
)

DAGGER = "†"
COLLAPSED = "‡"
MISSING = "—"


def num(x: float | None, signed: bool = False) -> str:
    """Fixed two-decimal format; never '-0.00'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    text = f"{x:+.2f}" if signed else f"{x:.2f}"
    if text in ("-0.00", "+0.00"):
        text = "+0.00" if signed else "0.00"
    return text


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def md_text(text: Any) -> str:
    """Safe inside a Markdown table cell: one line, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def cell_text(c: CellStats | None, est: Interval | None, bold: bool) -> str:
    """'**41.20** [37.10, 45.30] (n=3)': mean, 95% interval, seeds; ‡ when collapsed."""
    if c is None or est is None or (c.n == 0 and c.n_failed == 0):
        return MISSING
    if c.n == 0:
        return f"failed ({c.n_failed})"
    m = f"**{num(est.mean)}**" if bold else num(est.mean)
    interval = f" [{num(est.low)}, {num(est.high)}]" if est.low is not None else ""
    count = f"n={c.n}" + (f", {c.n_failed} failed" if c.n_failed else "")
    return f"{m}{interval} ({count})" + _collapsed_mark(c)


def _collapsed_mark(c: CellStats) -> str:
    """' ‡' when every seed is degenerate, ' ‡1/3' when some are (`board.degenerate`)."""
    if not c.collapsed:
        return ""
    return f" {COLLAPSED}" if c.n_degenerate >= c.n else f" {COLLAPSED}{c.n_degenerate}/{c.n}"


def diff_text(c: CellStats, eps: float, significant: bool = False) -> str:
    """'+3.67† [+3.29, +4.05] (n=3)': the paired difference to random; † when significant after
    the family's correction, ‡ when collapsed."""
    d = c.diff[eps]
    if d is None or d.n == 0:
        return MISSING
    collapsed = _collapsed_mark(c)
    if d.n == 1 or d.low is None or d.high is None:
        return f"{num(d.mean, True)} (n=1){collapsed}"
    mark = DAGGER if significant and not c.collapsed else ""
    return f"{num(d.mean, True)}{mark} [{num(d.low, True)}, {num(d.high, True)}] (n={d.n}){collapsed}"


def at_eps(board: Board, eps: float) -> str:
    """' at ε = 8/255' (always said: a board may hold several ε)."""
    return f" at ε = {eps_text(eps)}"


def _flat_items(d: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    if not d:
        return []
    out: list[str] = []
    for k in sorted(d):
        v = d[k]
        if isinstance(v, Mapping) and v:
            out += _flat_items(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}")
    return out


def settings_text(
    values: Iterable[Mapping[str, Any] | None], drop: tuple[str, ...] = ()
) -> list[tuple[int, str]]:
    """Distinct settings with their counts, most common first (then by text).

    Counted by `repr` first (cheap; records written by `write_record` have sorted keys), then
    merged by the flattened text, so key order never splits one setting in two.
    """
    counts: Counter[str] = Counter()
    first: dict[str, Mapping[str, Any] | None] = {}
    for v in values:
        key = repr(v)
        counts[key] += 1
        first.setdefault(key, v)
    merged: Counter[str] = Counter()
    for key, n in counts.items():
        v = first[key]
        if v and drop:
            v = {k: x for k, x in v.items() if k not in drop}
        merged[", ".join(_flat_items(v)) or "(none)"] += n
    return sorted(((n, text) for text, n in merged.items()), key=lambda t: (-t[0], t[1]))


def settings_lines(title: str, values: Iterable[Mapping[str, Any] | None]) -> list[str]:
    distinct = settings_text(values)
    if len(distinct) == 1:
        return [f"- {title}: {md_text(distinct[0][1])}"]
    lines = [f"- {title}: **{len(distinct)} different settings on this board**"]
    lines += [f"  - {n} records: {md_text(text)}" for n, text in distinct]
    return lines


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


DEFAULTS: dict[str, Mapping[str, Any]] = {
    name: to_jsonable(kind()) for name, kind in
    (("evaluation", EvaluationConfig), ("training", TrainingConfig), ("attack", AttackConfig), ("scoring", ScoringConfig))
}  # what a grid that sets nothing runs, as a record spells it


def beyond_defaults(written: Mapping[str, Any] | None, default: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings in `written` that differ from `default`, nested sections included (a section
    left with none is dropped): so records written before and after a setting existed, at its
    default, show one setting on the board."""
    if written is None:
        return None
    out: dict[str, Any] = {}
    for key, value in written.items():
        base = default.get(key, _ABSENT)
        if isinstance(value, Mapping) and isinstance(base, Mapping):
            if rest := beyond_defaults(value, base):
                out[key] = rest
        elif value != base:
            out[key] = value
    return out


_ABSENT = object()


def defaults_line() -> str:
    """The defaults the settings lines leave out, once per board, so the board alone still says
    every setting its cells ran at (TRADES's beta, the attack's random start, ...)."""
    names = {"evaluation": "evaluation", "training": "training", "attack": "training attack", "scoring": "scoring run"}
    parts = [f"{names[section]}: {', '.join(_flat_items(values))}" for section, values in DEFAULTS.items()]
    return f"- corebench's defaults, for every setting not listed above: {md_text('; '.join(parts))}"
