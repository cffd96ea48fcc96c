"""Leaderboards: Markdown pages, plots and exports generated from the results store only.

Layout under `out_dir`:

    README.md                                  index of every board
    <grid>/<dataset>__<arch>__<regime>.md      one board: methods × fractions, per ε
    <grid>/<dataset>__<arch>__<regime>.svg     robust accuracy against fraction, a panel per ε
    <grid>/<dataset>__<arch>__<regime>.csv     the aggregated table behind the page
    <grid>/model_info/<dataset>/<norm>/<method>__f<fraction>__<arch>__<regime>.json
                                               RobustBench-style entry per method × fraction
    .corebench-generated                       list of the files above (stale ones are removed)

Protocols are never mixed. Records of one grid × dataset × arch × regime made under different
evaluation protocols (norm, ε list, AutoAttack version or attack list, n_examples; see
`corebench.core.protocol`) go to separate boards: when a group has more than one protocol, *each*
of its pages (and exports) gets a protocol tag suffix, e.g.
`digits__resnet18__standard__linf-eps8_255-aa-standard-n1000.md`, and the page header states the
protocol. A group with one protocol keeps the plain name. Two records of one cell (same key and
protocol, in two folders) are an error naming both files; a record whose path does not spell
its key (a copy such as `seed0 copy.json`) is skipped and reported.

Every file written or removed resolves inside `out_dir` (`corebench.core.files.confined`); the
manifest is only honoured for lines naming files inside it.

The numbers (intervals, separated best, collapsed models, ranks, stability, cost) come from
`corebench.boards.board`; this module renders them. Determinism: same records in → byte-identical
files out. Everything is sorted by values taken from the records, floats are printed with
fixed formats (2 decimals for accuracies), nothing depends on time, the machine or the results
folder's location (paths are shown relative to it), and plots are SVG text (`corebench.boards.plots`).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from corebench.boards.board import (
    AGREEMENT_WITH,
    MIN_CLASS_SAMPLES,
    RANDOM,
    Board,
    CellStats,
    FairStability,
    MethodFacts,
    aggregate,
    build_boards,
    expected_random_jaccard,
    rel_text,
)
from corebench.boards.plots import Panel, PlotSpec, Series, render_svg
from corebench.boards.significance import ALPHA
from corebench.boards.stats import CORRECTION_NAMES, SEEDS_ONLY, Interval
from corebench.core.errors import PathError, ResultsError
from corebench.core.faults import fault_point
from corebench.core.files import confined, confiner, sweep_folder, writable_folder
from corebench.core.protocol import eps_text
from corebench.core.spec import FULL_DATA, slug
from corebench.store.inputs import unchanged
from corebench.store.record import Record
from corebench.store.results import Stored, gc_paused, scan, write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST = ".corebench-generated"
DAGGER = "†"
COLLAPSED = "‡"
MISSING = "—"


@dataclass
class BoardReport:
    """What `generate_leaderboards` produced and what it had to leave out."""

    pages: list[Path]
    skipped: list[tuple[Path, str]]
    n_ok: int
    n_failed: int
    index: Path | None = None
    files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- formatting


def _num(x: float | None, signed: bool = False) -> str:
    """Fixed two-decimal format; never '-0.00'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    text = f"{x:+.2f}" if signed else f"{x:.2f}"
    if text in ("-0.00", "+0.00"):
        text = "+0.00" if signed else "0.00"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def _md(text: Any) -> str:
    """Safe inside a Markdown table cell: one line, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _cell_text(c: CellStats | None, est: Interval | None, bold: bool) -> str:
    """'**41.20** [37.10, 45.30] (n=3)': mean, 95% interval, seeds; ‡ when collapsed."""
    if c is None or est is None or (c.n == 0 and c.n_failed == 0):
        return MISSING
    if c.n == 0:
        return f"failed ({c.n_failed})"
    m = f"**{_num(est.mean)}**" if bold else _num(est.mean)
    interval = f" [{_num(est.low)}, {_num(est.high)}]" if est.low is not None else ""
    count = f"n={c.n}" + (f", {c.n_failed} failed" if c.n_failed else "")
    return f"{m}{interval} ({count})" + _collapsed_mark(c)


def _collapsed_mark(c: CellStats) -> str:
    """' ‡' when every seed is degenerate, ' ‡1/3' when some are (`board.degenerate`)."""
    if not c.collapsed:
        return ""
    return f" {COLLAPSED}" if c.n_degenerate >= c.n else f" {COLLAPSED}{c.n_degenerate}/{c.n}"


def _diff_text(c: CellStats, eps: float, significant: bool = False) -> str:
    """'+3.67† [+3.29, +4.05] (n=3)': the paired difference to random; † when significant after
    the family's correction, ‡ when collapsed."""
    d = c.diff[eps]
    if d is None or d.n == 0:
        return MISSING
    collapsed = _collapsed_mark(c)
    if d.n == 1 or d.low is None or d.high is None:
        return f"{_num(d.mean, True)} (n=1){collapsed}"
    mark = DAGGER if significant and not c.collapsed else ""
    return f"{_num(d.mean, True)}{mark} [{_num(d.low, True)}, {_num(d.high, True)}] (n={d.n}){collapsed}"


def _at(board: Board, eps: float) -> str:
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


def _settings(
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


def _settings_lines(title: str, values: Iterable[Mapping[str, Any] | None]) -> list[str]:
    distinct = _settings(values)
    if len(distinct) == 1:
        return [f"- {title}: {_md(distinct[0][1])}"]
    lines = [f"- {title}: **{len(distinct)} different settings on this board**"]
    lines += [f"  - {n} records: {_md(text)}" for n, text in distinct]
    return lines


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# --------------------------------------------------------------------------- page


def render_board(board: Board, *, plot_name: str | None, csv_name: str, model_info_dir: str) -> str:
    """The Markdown of one board (aggregate() must have run)."""
    proto = board.protocol
    metric = board.metric_name
    title = f"{board.grid} · {board.dataset} · {board.arch} · {board.regime}"
    if board.tag:
        title += f" · {board.tag}"
    out = [f"# {_md(title)}", ""]
    out += _data_lines(board)
    out.append(
        f"{metric} (%) of `{_md(board.arch)}` trained with regime `{board.regime}` on coresets "
        f"of `{_md(board.dataset)}` chosen by each selection method (rows), by fraction of the "
        f"training set kept (columns). Evaluation protocol: {proto.text()}. "
        f"Training budget: {_budget_text(board)}. {_model_text(board)}"
    )
    out.append("")
    out.append(
        "Generated by `corebench leaderboard` from the result records; do not edit by hand. "
        "Cells: mean [95% interval] (n = seeds that finished); the interval is the seeds' "
        "t-interval for several seeds and the exact binomial interval over the evaluated test "
        "images for one. **bold**: best in the column, only when its interval lies above the "
        f"runner-up's. {COLLAPSED}: collapsed, some seed's model is degenerate (more than half of "
        "its clean predictions in one class, or its clean accuracy at most 1.5× chance"
        + (f", {_num(150.0 / board.num_classes)}% with {board.num_classes} classes" if board.num_classes else "")
        + f"; judged per seed, {COLLAPSED}k/n: k of n seeds): a near-constant predictor, whose robust accuracy "
        "says nothing; never bold, not ranked, no significance claimed."
    )
    out.append("")
    out.append(_full_text(board))
    out.append("")
    out += _primary_section(board)
    if board.random_label is None:
        out.append(f"No `{RANDOM}` baseline on this board: differences to random are not shown.")
        out.append("")

    headers = ["method"] + [_pct(f) for f in board.fractions]

    def label(lab: str) -> str:
        return f"{_md(lab)} (baseline)" if lab == board.random_label else _md(lab)

    def table(value, best: Mapping[float, str | None]) -> str:
        rows = [[label(lab)] + [_cell_text(board.cells.get((lab, f)), value(board.cells.get((lab, f))),
                                           best.get(f) == lab) for f in board.fractions]
                for lab in board.methods]  # fmt: skip
        return _table(headers, rows)

    for eps in proto.eps:
        out += [f"## {metric} (%){_at(board, eps)}", ""]
        out += [table(lambda c, eps=eps: c.robust[eps] if c else None, board.best[eps]), ""]
    out += ["## Clean accuracy (%)", "", table(lambda c: c.clean if c else None, board.best_clean), ""]

    if board.random_label is not None:
        for eps in proto.eps:
            out += _diff_section(board, eps, headers)
    out += _ranking_section(board)
    out += _degenerate_section(board)
    out += _coverage_section(board, headers)
    out += _budget_section(board, headers)
    out += _stability_section(board, headers)
    out += _fair_stability_section(board, headers)
    out += _cost_section(board, headers)

    out += [f"## {metric} against fraction kept", ""]
    if plot_name:
        out += [f"![{metric} against fraction kept]({plot_name})", ""]
    out.append(f"Data: [{csv_name}]({csv_name}) (aggregated table) · RobustBench-style entries: "
               f"[{model_info_dir}/]({model_info_dir}/)")  # fmt: skip
    out.append("")

    failed = sorted((e for e in board.entries if not e.ok), key=lambda e: (e.label, e.fraction, e.seed))
    if failed:
        out += ["## Failed cells", ""]
        rows = [[_md(e.label), _pct(e.fraction), str(e.seed), _md(e.error or "")] for e in failed]
        out += [_table(["method", "fraction", "seed", "error"], rows), ""]

    out += ["---", "", "## Provenance", ""]
    out += _provenance(board)
    out += _footnotes(board)
    out.append("")
    return "\n".join(out)


def _data_lines(board: Board) -> list[str]:
    """The data's caveats first (a proxy dataset, a lossy copy), then where it came from."""
    refs = [r.data for r in board.records if r.data is not None]
    if not refs:
        return []
    notes = list(dict.fromkeys(n for ref in refs for n in ref.notes))  # the dataset's order
    sources = sorted({f"{ref.source or ref.name}: {ref.n_train:,} train / {ref.n_test:,} test images"
                      for ref in refs})  # fmt: skip
    out = [f"> **{_md(note)}**" if i == 0 else f"> {_md(note)}" for i, note in enumerate(notes)]
    if out:
        out.append(">")
    out.append("> Data: " + "; ".join(_md(s) for s in sources) + ".")
    return out + [""]


def _full_text(board: Board) -> str:
    f = board.full
    if f is None or not (f.n or f.n_failed):
        return "**Full-data reference**: none in the results."
    if not f.n:
        return f"**Full-data reference**: failed ({f.n_failed} seeds)."
    robust = "; ".join(f"{board.metric_name}{_at(board, eps)} {_cell_text(f, f.robust[eps], False)}"
                       for eps in board.protocol.eps)  # fmt: skip
    return (f"**Full-data reference** (100% of the training set, method `{FULL_DATA}`): {robust}; "
            f"clean accuracy {_cell_text(f, f.clean, False)}.")  # fmt: skip


def _model_text(board: Board) -> str:
    """The model as timm builds it and what the grid changed; the training attack of an
    adversarial regime (both decide what a board can be compared with)."""
    archs = {(a.name, json.dumps(dict(a.kwargs), sort_keys=True)) for r in board.records
             if (a := r.config.arch)}  # fmt: skip
    if len(archs) != 1:
        text = "Model: **several architecture settings on this board** (see the records)."
    else:
        name, kwargs = next(iter(archs))
        changed = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in json.loads(kwargs).items())
        text = (f"Model: timm `{_md(name)}` with " + changed + ", where timm's defaults differ." if changed
                else f"Model: timm `{_md(name)}` with timm's defaults.")
    if board.regime != "standard":
        attacks = {(a.eps, a.step_size, a.steps, a.trades_beta) for r in board.records
                   if (a := r.config.attack)}  # fmt: skip
        if len(attacks) == 1:
            eps, step, steps, beta = next(iter(attacks))
            text += (f" Training attack: {steps} PGD steps of {eps_text(step)} within "
                     f"ε = {eps_text(eps)}" + (f", TRADES β = {beta:g}" if board.regime == "trades" else "")
                     + ".")
    return text


def _budget_text(board: Board) -> str:
    """How much training each fraction got: the same epochs, or the same SGD steps."""
    budgets = sorted({(t.budget, t.epochs, t.steps) for r in board.records if (t := r.config.training)})
    if len(budgets) != 1:
        return "**several budgets on this board** (see Provenance)"
    kind, epochs, steps = budgets[0]
    if kind == "steps":
        fixed = f"{steps:,} SGD steps" if steps else "the full-data number of SGD steps"
        return f"`steps`, every fraction trains {fixed} (a small coreset sees each sample more often)"
    return f"`epochs`, every fraction trains {epochs} epochs (a 10% coreset gets a tenth of the full-data steps)"


def _diff_section(board: Board, eps: float, headers: list[str]) -> list[str]:
    metric = board.metric_name
    out = [f"## Difference to random, exploratory ({metric}{_at(board, eps)}, percentage points)", ""]
    out.append(
        f"Method minus `{_md(board.random_label)}`, paired over seeds (same seed and fraction) and, "
        f"where the records keep per-image outcomes, over the evaluated test images: mean [95% interval] "
        f"(n = pairs). {_family_text(board)}"
    )
    present = [d for lab in board.methods for f in board.fractions
               if lab != board.random_label and (d := board.cells[(lab, f)].diff[eps]) is not None and d.n]  # fmt: skip
    if present and all(d.n < 2 for d in present):
        out.append("Every comparison here has a single seed: no significance is claimed.")
    elif any(d.n < 2 for d in present):
        out.append("Comparisons with n=1 have no interval: no significance is claimed for them.")
    if any(d.basis == SEEDS_ONLY for d in present if d.n >= 2):
        out += ["", SEEDS_ONLY_NOTE]
    out.append("")
    family = board.family
    rows = [[_md(lab)] + [_diff_text(board.cells[(lab, f)], eps, bool(family and family.significant((lab, f, eps))))
                          for f in board.fractions]
            for lab in board.methods if lab != board.random_label]  # fmt: skip
    return out + [_table(headers, rows), ""]


SEEDS_ONLY_NOTE = (
    "**Seed-only intervals**: these records keep no per-image outcomes (written before the "
    "field), so the intervals count seed-to-seed noise only, not the sampling of the evaluated "
    "test images that every seed shares: they are too narrow. Rerun the cells to get intervals over "
    "seeds and images."
)
INTERVAL_METHOD = (
    "Intervals over seeds and images: variance components of the per-image differences, seeds × "
    "images (two-way ANOVA mean squares, Searle, Casella & McCulloch 1992), t with the seeds' "
    "S − 1 degrees of freedom when a seed component is present, Satterthwaite's otherwise "
    "(`corebench.stats`)."  # the boards' committed wording, kept byte for byte (the module is corebench.boards.stats)
)


def _family_text(board: Board) -> str:
    """What † means on this board: the family, its size and the correction."""
    family = board.family
    if family is None or not family.size:
        return "No comparison here has two seeds: nothing is tested."
    name = CORRECTION_NAMES[family.method]
    return (f"{DAGGER}: significant after {name} correction across this board's family of "
            f"{_count(family.size, 'exploratory comparison')} (every difference to random with an "
            f"interval, at every fraction and ε, collapsed rows and declared primary comparisons "
            f"left out): adjusted p < {ALPHA:g}. {INTERVAL_METHOD}")


def _primary_section(board: Board) -> list[str]:
    """The grid's declared comparisons, first: each with its interval, p and power."""
    if not board.primary:
        return []
    n = len(board.primary)
    name = CORRECTION_NAMES[board.correction]
    out = ["## Primary comparisons (declared in the grid)", ""]
    out.append(
        f"Declared in the grid file before the board is read (`primary:`), so not corrected for "
        f"the exploratory family below; p adjusted ({name}) across the {_count(n, 'declared comparison')} "
        f"of this board. Detectable: the smallest true difference this board's seeds and images find "
        f"with 80% power at α = {ALPHA:g}, from the variance the rows show."
    )
    out.append("")
    rows = []
    for p in board.primary:
        what = f"{_md(p.method)} − {_md(p.against)}"
        at = f"{_pct(p.fraction)}, ε = {eps_text(p.eps)}" if not math.isnan(p.eps) else _pct(p.fraction)
        d = p.diff
        if d is None or d.n == 0:
            rows.append([what, at, "not on this board", MISSING, MISSING, MISSING, MISSING])
            continue
        interval = f" [{_num(d.low, True)}, {_num(d.high, True)}]" if d.low is not None else ""
        basis = "seeds × images" if d.basis != SEEDS_ONLY else "seeds only"
        rows.append([what, at, f"{_num(d.mean, True)}{interval} (n={d.n}, {basis})", _p(d.p), _p(p.p_adjusted),
                     "significant" if p.p_adjusted is not None and p.p_adjusted < ALPHA else "not significant",
                     _num(p.detectable) if math.isfinite(p.detectable) else "undecidable (fewer than 2 seeds)"])
    headers = ["comparison", "at", "difference (pp) [95% interval]", "p", f"p ({name})", "verdict",
               "detectable at 80% power (pp)"]
    out += [_table(headers, rows), ""]
    if any(p.diff is not None and p.diff.basis == SEEDS_ONLY and p.diff.n >= 2 for p in board.primary):
        out += [SEEDS_ONLY_NOTE, ""]
    return out


def _p(p: float | None) -> str:
    if p is None:
        return MISSING
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _ranking_section(board: Board) -> list[str]:
    eps_list = board.protocol.eps
    out = ["## Ranking", ""]
    out.append(
        f"Rank 1 = highest mean {board.metric_name} at a fraction, among the models that did not "
        "collapse (ties share the average rank); mean rank over the fractions ranked; gain = mean "
        "over those fractions of the paired difference to random. Ordered by the mean rank"
        + (" averaged over the ε columns." if len(eps_list) > 1 else ".")
    )
    out.append("")
    headers = ["#", "method"]
    for eps in eps_list:
        at = f" ({eps_text(eps)})" if len(eps_list) > 1 else ""
        headers += [f"mean rank{at}", f"mean gain over random{at} (pp)"]
    headers += ["fractions ranked", f"collapsed {COLLAPSED}"]
    rows = []
    for position, lab in enumerate(board.methods, start=1):
        ranked = any(board.mean_rank[eps][lab] is not None for eps in eps_list)
        row = [str(position) if ranked else MISSING, f"{_md(lab)} (baseline)" if lab == board.random_label else _md(lab)]
        for eps in eps_list:
            gain = "(reference)" if lab == board.random_label else _num(board.gain[eps].get(lab), True)
            row += [_num(board.mean_rank[eps][lab]), gain]
        n_ranked = sum(1 for f in board.fractions if (lab, f) in board.rank[eps_list[0]])
        n_collapsed = sum(1 for f in board.fractions if board.cells[(lab, f)].collapsed)
        row += [f"{n_ranked}/{len(board.fractions)}", str(n_collapsed) if n_collapsed else ""]
        rows.append(row)
    return out + [_table(headers, rows), ""]


def _degenerate_section(board: Board) -> list[str]:
    """Every seed flagged by `board.degenerate`, with the reason."""
    flagged = sorted(board.degenerate_seeds, key=lambda d: (d[0] == FULL_DATA, d[0], d[1], d[2]))
    if not flagged:
        return []
    out = ["## Degenerate seeds", ""]
    out.append(f"{_count(len(flagged), 'seed')} of {board.n_ok} finished flagged as degenerate; each marks its "
               f"method × fraction {COLLAPSED} (not ranked, no significance).")
    out.append("")
    rows = [[_md(lab), _pct(f), str(seed), _md(why)] for lab, f, seed, why in flagged]
    return out + [_table(["method", "fraction", "seed", "why"], rows), ""]


def _coverage_section(board: Board, headers: list[str]) -> list[str]:
    """Classes covered per method × fraction: how many classes the coresets keep, and how lopsided."""
    if not board.coverage:
        return []
    out = ["## Classes covered", ""]
    out.append(
        f"Classes with at least {MIN_CLASS_SAMPLES} samples in the coreset (of "
        + (f"{board.num_classes}" if board.num_classes else "all")
        + "), and in brackets the largest class's share of the coreset; lowest–highest over the "
        "seeds. A method that ranks all samples together (`class_balanced: false`) can drop whole "
        "classes; its accuracy then measures which classes it kept as much as which samples."
    )
    out.append("")

    def span(values: list[float], fmt: str) -> str:
        low, high = fmt.format(min(values)), fmt.format(max(values))
        return low if low == high else f"{low}–{high}"

    rows = []
    for lab in board.methods:
        cells = []
        for f in board.fractions:
            seeds = board.coverage.get((lab, f))
            cells.append(MISSING if not seeds else
                         f"{span([k for k, _ in seeds], '{:g}')} ({span([100 * s for _, s in seeds], '{:.0f}')}%)")
        rows.append([_md(lab), *cells])
    return out + [_table(headers, rows), ""]


def _budget_section(board: Board, headers: list[str]) -> list[str]:
    """The training each row got: SGD steps against full data's, and how far it fitted
    (robust / clean accuracy), beside how the method's reference trains."""
    full = board.cost.get(FULL_DATA)
    full_steps = full.train.get(1.0, (None, None))[0] if full else None
    top = board.protocol.eps[-1]
    out = ["## Training budget", ""]
    out.append(
        f"Budget on this board: {_budget_text(board)}. Per method × fraction: the SGD steps trained "
        "(mean over seeds)"
        + (f", as a share of the full-data reference's {full_steps:,.0f}" if full_steps else "")
        + f"; then {board.metric_name}{_at(board, top)} over clean accuracy"
        + (f" (full data: {_ratio(board.full, top)})" if board.full is not None and board.full.n else "")
        + ". A model trained for "
        "few steps fits little: its robust accuracy is close to its clean accuracy because both are "
        "low, so under an `epochs` budget a small coreset can look robust by under-fitting. The "
        "last column says how the method's reference trains (`steps` keeps the steps of every "
        "fraction equal)."
    )
    out.append("")
    methods = {e.label: e.method for e in board.entries}
    rows = []
    for lab in board.methods:
        cost = board.cost.get(lab)
        cells = []
        for f in board.fractions:
            steps = cost.train.get(f, (None, None))[0] if cost else None
            c = board.cells.get((lab, f))
            if steps is None or c is None or not c.n:
                cells.append(MISSING)
                continue
            text = f"{steps:,.0f}" + (f" ({steps / full_steps:.2f}×)" if full_steps else "")
            cells.append(text + f", {_ratio(c, top)}")
        rows.append([_md(lab), *cells, _md(board.method_facts.get((methods.get(lab, ""), "reference_budget"), ""))])
    return out + [_table([*headers, "its reference trains"], rows), ""]


def _ratio(c: CellStats, eps: float) -> str:
    """Mean robust accuracy at `eps` over mean clean accuracy, two decimals."""
    robust, clean = c.robust[eps].mean, c.clean.mean
    return MISSING if not clean or robust is None or math.isnan(robust) else f"{robust / clean:.2f}"


def _stability_section(board: Board, headers: list[str]) -> list[str]:
    if not board.stability and not board.scorer_stability:
        return []
    out = ["## Selection stability", ""]
    out.append(
        "Mean Jaccard overlap |A ∩ B| / |A ∪ B| of the coresets a method chose in different seeds "
        "(each seed has its own scoring runs), over all pairs of seeds: 1 = the same samples "
        "whatever the scoring run, random subsets give f / (2 − f). A score that is a property "
        "of the data, not of one training run, keeps it high."
    )
    out.append("")
    rows = [[_md(lab)] + [_jaccard_text(board.stability.get((lab, f))) for f in board.fractions]
            for lab in board.methods]  # fmt: skip
    rows.append(["two random subsets (expected)"] + [f"{expected_random_jaccard(f):.2f}" for f in board.fractions])
    out += [_table(headers, rows), ""]
    if board.scorer_stability:
        out.append("Across scoring architectures: the same method and seed scored by different "
                   "architectures (pairs of scorers).")  # fmt: skip
        out.append("")
        bases = sorted({base for base, _ in board.scorer_stability})
        rows = [[_md(b)] + [_jaccard_text(board.scorer_stability.get((b, f))) for f in board.fractions] for b in bases]
        out += [_table(headers, rows), ""]
    if board.agreement:
        out.append(f"Agreement with `{AGREEMENT_WITH}`: the mean Jaccard overlap of each method's coreset with "
                   f"`{AGREEMENT_WITH}`'s at the same seed (pairs = seeds), the same measure as above: does "
                   "another score, or a scoring run under another regime, keep the same samples? Random "
                   "subsets give f / (2 − f).")  # fmt: skip
        out.append("")
        rows = [[_md(lab)] + [_jaccard_text(board.agreement.get((lab, f))) for f in board.fractions]
                for lab in board.methods if any((lab, f) in board.agreement for f in board.fractions)]  # fmt: skip
        out += [_table(headers, rows), ""]
    return out


def _fair_stability_section(board: Board, headers: list[str]) -> list[str]:
    """Stability on equal footing: one scoring run per selection, and the method's own randomness."""
    if not board.fair_stability:
        return []
    out = ["### On equal footing", ""]
    out.append(
        "The table above compares what each method kept, and a method that averages its score over "
        "several scoring runs looks stable by averaging. Here every method selects from one "
        "scoring run: J = mean Jaccard of those single-run selections across seeds; ρ = Spearman "
        "correlation of the single-run scores of two scoring runs of one seed (methods that read "
        "two or more); own = Jaccard of the selection with the one the same signals give under "
        "another seed (1 = the signals decide; lower: random draws or ties); ties = samples tied "
        "with the last kept score; runs = scoring runs the kept coreset averaged. Means over seeds."
    )
    out.append("")

    def text(v: FairStability | None) -> str:
        if v is None:
            return MISSING
        parts = [f"J {v.jaccard[0]:.2f}" if v.jaccard else None,
                 f"ρ {v.spearman:.2f}" if v.spearman is not None else None,
                 f"own {v.own:.2f}" if v.own is not None else None,
                 f"ties {v.ties:g}" if v.ties is not None else None,
                 f"runs {v.runs_averaged:g}" if v.runs_averaged is not None else None]  # fmt: skip
        return " · ".join(p for p in parts if p) or MISSING

    methods = {e.label: e.method for e in board.entries}
    rows = [[_md(lab)] + [text(board.fair_stability.get((lab, f))) for f in board.fractions]
            + [_md(board.method_facts.get((methods.get(lab, ""), "randomness"), ""))]
            for lab in board.methods if any((lab, f) in board.fair_stability for f in board.fractions)]  # fmt: skip
    return out + [_table([*headers, "its own randomness"], rows), ""]


def _jaccard_text(value: tuple[float, int] | None) -> str:
    return MISSING if value is None else f"{value[0]:.2f} ({_count(value[1], 'pair')})"


def _cost_section(board: Board, headers: list[str]) -> list[str]:
    if not board.cost:
        return []
    full = board.cost.get(FULL_DATA)
    full_steps, full_s = full.train.get(1.0, (None, None)) if full else (None, None)
    out = ["## Cost", ""]
    out.append(
        "Per seed: the scoring runs a method's selection needs (each distinct run counted once, "
        "however many fractions share it), charged by need: the training epochs and measurement "
        "passes over the train set its signals need (GraNd at initialisation: 0 epochs, 1 pass), "
        "not the whole run it shares with longer needs, and the run's seconds scaled by the "
        "epochs needed (passes not timed); then per fraction the "
        "training steps and seconds, and in brackets the total (scoring + training) relative to "
        "training once on the full data"
        + (f" ({f'{full_steps:,.0f} steps, ' if full_steps else ''}{full_s:.1f} s)" if full_s
           else " (no full-data reference: not shown)") + "."
    )
    out.append("")
    rows = []
    for lab in board.methods:
        cost = board.cost.get(lab)
        if cost is None:
            continue
        runs = MISSING if cost.scoring_runs is None else f"{cost.scoring_runs:g}"
        epochs = MISSING if cost.scoring_epochs is None else f"{cost.scoring_epochs:g}"
        passes = MISSING if cost.scoring_passes is None else f"{cost.scoring_passes:g}"
        scoring = MISSING if cost.scoring_s is None else f"{cost.scoring_s:.1f} s"
        cells = []
        for f in board.fractions:
            steps, secs = cost.train.get(f, (None, None))
            if secs is None:
                cells.append(MISSING)
                continue
            text = (f"{steps:,.0f} steps, " if steps is not None else "") + f"{secs:.1f} s"
            if full_s:
                text += f" ({((cost.scoring_s or 0.0) + secs) / full_s:.2f}×)"
            cells.append(text)
        rows.append([_md(lab), runs, epochs, passes, scoring, *cells])
    cost_headers = ["method", "scoring runs", "epochs needed", "passes needed", "scoring"] + headers[1:]
    return out + [_table(cost_headers, rows), ""]


def _provenance(board: Board) -> list[str]:
    recs = board.records
    grids = sorted({f"`{r.grid.name}` from `{r.grid.source or '?'}`" for r in recs})
    lines = [f"- Grid file: {', '.join(grids)}"]
    n_eval = sorted({r.metrics.n_eval for r in recs if r.status == "ok" and r.metrics})
    evaluated = f"; examples actually evaluated: {', '.join(str(n) for n in n_eval)}" if n_eval else ""
    lines.append(f"- Attack (evaluation): {board.protocol.text()}{evaluated}")
    # the settings as each record spells them (`Record.config_written`): a record written before
    # a setting existed does not claim its default
    lines += _settings_lines("Evaluation settings", (r.config_written["evaluation"] for r in recs))
    lines += _settings_lines(
        f"Training (regime `{board.regime}`)", (r.config_written.get("training") for r in recs)
    )
    unused = " (used by pgd_at and trades; unused by standard training)" if board.regime == "standard" else ""
    lines += _settings_lines(f"Training attack{unused}", (r.config_written.get("attack") for r in recs))
    lines += _settings_lines("Scoring run", (r.config_written.get("scoring") for r in recs))
    scorers = sorted({r.cell.scoring_arch for r in recs if r.cell.method != FULL_DATA})
    if scorers:
        lines.append(f"- Scoring architectures: {', '.join(_md(s) for s in scorers)}")
    by_method: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        if r.cell.method != FULL_DATA:
            by_method[r.cell.method_label].append(r.method_options)
    if by_method:
        lines.append("- Method options:")
        for lab in sorted(by_method):
            distinct = _settings(by_method[lab])
            text = "; ".join(t if len(distinct) == 1 else f"{t} ({n} records)" for n, t in distinct)
            lines.append(f"  - `{_md(lab)}`: {_md(text)}")
    lines += _method_packages(recs)
    distinct = _settings((r.versions for r in recs), drop=("git_commit",))
    if len(distinct) == 1:
        lines.append(f"- Package versions: {_md(distinct[0][1])}")
    else:
        lines.append("- Package versions:")
        lines += [f"  - {n} records: {_md(t)}" for n, t in distinct]
    commits = Counter(str(r.versions.get("git_commit")) for r in recs)
    lines.append(
        "- Git commit(s): "
        + ", ".join(f"`{c}` ({n} records)" for c, n in sorted(commits.items(), key=lambda t: (-t[1], t[0])))
    )
    devices = Counter(str(r.device) for r in recs)
    lines.append(
        "- Devices: " + ", ".join(f"{_md(d)} ({n})" for d, n in sorted(devices.items(), key=lambda t: (-t[1], t[0])))
    )
    cells = f"- Cells: {board.n_ok} finished, {board.n_failed} failed"
    if board.skipped:
        cells += f"; {_count(len(board.skipped), 'malformed file')} skipped:"
        lines.append(cells)
        lines += [f"  - `{_md(p)}`: {_md(reason)}" for p, reason in board.skipped]
    else:
        lines.append(cells + "; no malformed files skipped")
    return lines


def _footnotes(board: Board) -> list[str]:
    """Settings a reader must not take as verified: CCS's hard cutoff β read off the paper."""
    unverified: dict[str, set[str]] = defaultdict(set)
    for r in board.records:
        opts = r.method_options
        source = str(opts.get("hard_cutoff_source") or "")
        if "unverified" in source:
            unverified[r.cell.method_label].add(f"{_pct(r.cell.fraction)}: β = {opts.get('hard_cutoff')}")
    if not unverified:
        return []
    out = ["", "## Unverified settings", ""]
    for lab in sorted(unverified):
        out.append(f"- `{_md(lab)}`: the hard cutoff β at {', '.join(sorted(unverified[lab]))} follows a reading "
                   "of the CCS paper's appendix that was not verified against the reference; only β = 0.3 at "
                   "90% pruning on CIFAR-10 is confirmed by the reference README. Treat these rows as provisional.")
    return out


def _method_packages(recs: Sequence[Record]) -> list[str]:
    """Which installed package provided each row's method; plug-in rows are marked as such.
    Nothing when no record names its method's package (records older than the field)."""
    by_package: dict[str, set[str]] = defaultdict(set)
    for r in recs:
        src = r.method_source
        if src:
            where = f"`{src.distribution or src.module}` {src.version or '?'}"
            if src.editable:
                where += f", editable at commit `{src.git_commit or '?'}`"
            if (src.distribution or "") != "corebench":
                where += " — plug-in"
            by_package[where].add(r.cell.method_label)
    if not by_package:
        return []
    lines = ["- Method packages:"]
    lines += [f"  - {_md(where)}: {', '.join(f'`{_md(m)}`' for m in sorted(labels))}"
              for where, labels in sorted(by_package.items())]
    return lines


# --------------------------------------------------------------------------- exports


CSV_COLUMNS = (
    "grid", "dataset", "arch", "regime", "protocol", "method", "fraction", "eps", "n", "n_failed",
    "robust_metric", "robust_mean", "robust_low", "robust_high", "robust_std", "clean_mean", "clean_low",
    "clean_high", "diff_vs_random", "diff_ci_low", "diff_ci_high", "diff_n", "diff_basis", "p_value",
    "p_adjusted", "correction", "family_size", "significant", "rank",
    "collapsed", "jaccard_seeds", "jaccard_scorers", "scoring_runs", "scoring_s", "train_steps", "train_s",
)  # fmt: skip


def _csv(board: Board) -> str:
    metric = board.protocol.attack_name.lower().replace("-", "")
    entries = [(lab, f, board.cells[(lab, f)]) for lab in board.methods for f in board.fractions]
    if board.full is not None:
        entries.append((FULL_DATA, 1.0, board.full))
    lines = [",".join(CSV_COLUMNS)]
    fam = board.family
    for lab, f, c in entries:
        if c.n == 0 and c.n_failed == 0:
            continue
        cost = board.cost.get(lab)
        steps, secs = cost.train.get(f, (None, None)) if cost else (None, None)
        base = lab.split("@")[0]
        for eps in board.protocol.eps:
            r, d = c.robust[eps], c.diff[eps]
            values = [
                board.grid, board.dataset, board.arch, board.regime, board.protocol.key, lab, f"{f:g}",
                f"{eps:.6g}", str(c.n), str(c.n_failed), metric,
                *(_f4(v) for v in (r.mean, r.low, r.high, r.std, c.clean.mean, c.clean.low, c.clean.high)),
                _f4(d.mean if d and d.n else None), _f4(d.low if d else None), _f4(d.high if d else None),
                str(d.n) if d else "", d.basis if d and d.n >= 2 else "", _f4(d.p if d else None),
                _f4(fam.p.get((lab, f, eps))) if fam else "", fam.method if fam else "", str(fam.size) if fam else "",
                ("true" if fam and fam.significant((lab, f, eps)) else "false") if d and d.n >= 2 else "",
                _f4(board.rank[eps].get((lab, f))), "true" if c.collapsed else "false",
                _f4((board.stability.get((lab, f)) or (None,))[0]),
                _f4((board.scorer_stability.get((base, f)) or (None,))[0]),
                _f4(cost.scoring_runs if cost else None), _f4(cost.scoring_s if cost else None),
                _f4(steps), _f4(secs),
            ]  # fmt: skip
            lines.append(",".join(_csv_field(v) for v in values))
    return "\n".join(lines) + "\n"


def _f4(x: float | None) -> str:
    if x is None or math.isnan(x):
        return ""
    text = f"{x:.4f}"
    return "0.0000" if text == "-0.0000" else text


def _csv_field(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') else v


def _robustbench_entries(board: Board, page_rel: str) -> dict[str, str]:
    """RobustBench `model_info` JSON per method × fraction, keyed by file name, at the largest ε.

    Follows RobustBench's own format (model_info/cifar10/Linf/*.json, written by its
    `update_json`): its field order, `indent=2`, ε as "8/255", and accuracies as *strings*
    rounded to 2 decimals (`str(round(acc, 2))`), so the files drop into its tooling. Our own
    records keep numbers as numbers; only this export uses strings. `reported` is the same
    number as `autoattack_acc`: corebench is the party reporting it.
    """
    out: dict[str, str] = {}
    suffix = f"__{board.tag}" if board.tag else ""
    proto = board.protocol
    eps = proto.eps[-1]
    entries = [(lab, f, board.cells[(lab, f)]) for lab in board.methods for f in board.fractions]
    if board.full is not None:
        entries.append((FULL_DATA, 1.0, board.full))
    attack = proto.attack_text(code=False)
    for lab, f, c in entries:
        if c.n == 0:
            continue
        robust = c.robust[eps]
        what = "the full training set" if lab == FULL_DATA else f"a {_pct(f)} coreset chosen by {lab}"
        std = "" if math.isnan(robust.std) else f" (std {robust.std:.2f})"
        info = {
            "link": page_rel,
            "name": f"corebench {board.grid}: {lab} at {_pct(f)}, {board.regime} training",
            "authors": "",
            "additional_data": False,
            "number_forward_passes": 1,
            "dataset": board.dataset,
            "venue": f"corebench grid {board.grid}",
            "architecture": board.arch,
            "eps": eps_text(eps),
            "clean_acc": str(round(c.clean.mean, 2)),
            "reported": str(round(robust.mean, 2)),
            "autoattack_acc": str(round(robust.mean, 2)),
            "footnote": (
                f"Trained ({board.regime}) on {what}. Mean over {c.n} seed(s){std}; "
                f"{attack} on the first {proto.n_examples} test examples."
            ),
        }
        name = f"{slug(lab)}__f{f:g}__{slug(board.arch)}__{slug(board.regime)}{suffix}.json"
        out[name] = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    return out


def _plot_spec(board: Board) -> PlotSpec:
    panels = []
    for eps in board.protocol.eps:
        series = []
        for lab in sorted(board.methods):
            fr = [f for f in board.fractions if board.cells[(lab, f)].n]
            if not fr:
                continue
            est = [board.cells[(lab, f)].robust[eps] for f in fr]
            series.append(Series(
                label=lab, fractions=tuple(fr), mean=tuple(e.mean for e in est),
                low=tuple(math.nan if e.low is None else e.low for e in est),
                high=tuple(math.nan if e.high is None else e.high for e in est),
                reference=lab == board.random_label,
            ))  # fmt: skip
        full = None
        if board.full is not None and board.full.n:
            r = board.full.robust[eps]
            full = (r.mean, math.nan if r.low is None else r.low, math.nan if r.high is None else r.high)
        panels.append(Panel(title=f"ε = {eps_text(eps)}", series=tuple(series), full=full))
    title = f"{board.dataset} · {board.arch} · {board.regime}" + (f" · {board.tag}" if board.tag else "")
    return PlotSpec(title=title, ylabel=f"{board.metric_name} (%)", panels=tuple(panels))


# --------------------------------------------------------------------------- generation


def generate_leaderboards(
    results_dir: str | Path, out_dir: str | Path, facts: MethodFacts, *, strict: bool = False,
    scanned: tuple[list[Stored], list[tuple[Path, str]]] | None = None,
) -> BoardReport:
    """Write every board, its plot and exports, and the index; see the module docstring. `facts`
    answers what a board asks about the methods (`board.MethodFacts`; `corebench.methods.facts`).

    `scanned`: `results.scan(results_dir)`'s answer when the caller has read the records already
    (`corebench leaderboard` hands the same records to `verify.outside_records`)."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    # The records live until the end: keep the collector from re-walking them (frozen before the
    # collector runs again, so the scan's millions of objects are never walked); undone in `finally`.
    freeze = gc.get_freeze_count() == 0  # never unfreeze what someone else froze
    with gc_paused():
        records, problems = unchanged(*(scanned if scanned is not None else scan(results_dir)))
        if freeze:
            gc.freeze()
    try:
        return _generate(results_dir, out_dir, records, problems, facts, strict, freeze)
    finally:
        if freeze:
            gc.unfreeze()


def _generate(
    results_dir: Path, out_dir: Path, records: list[Stored], problems: list[tuple[Path, str]],
    facts: MethodFacts, strict: bool, freeze: bool = False,
) -> BoardReport:
    boards, problems = build_boards(records, problems, results_dir, facts)
    if freeze:  # the boards' entries too: no collection walks them either
        gc.freeze()
    if strict and problems:
        path, reason = problems[0]
        raise ResultsError(f"{path}: {reason}")
    out_dir = writable_folder(out_dir, "out_dir")
    files: dict[str, bytes] = {}
    pages: list[Path] = []
    for board in boards:
        aggregate(board)
        grid_dir = slug(board.grid)
        mi_dir = f"model_info/{slug(board.dataset)}/{slug(board.protocol.norm)}"
        page = f"{grid_dir}/{board.name}.md"
        plot = None
        if any(c.n for c in board.cells.values()) or (board.full is not None and board.full.n):
            plot = f"{board.name}.svg"
            files[f"{grid_dir}/{plot}"] = render_svg(_plot_spec(board))
        files[page] = render_board(board, plot_name=plot, csv_name=f"{board.name}.csv", model_info_dir=mi_dir).encode()
        files[f"{grid_dir}/{board.name}.csv"] = _csv(board).encode()
        for name, content in _robustbench_entries(board, page).items():
            files[f"{grid_dir}/{mi_dir}/{name}"] = content.encode()
        pages.append(out_dir / page)
    files["README.md"] = render_index(boards, problems, results_dir).encode()
    previous = _previous_files(out_dir)
    sweep_folder(out_dir)  # temp files of killed runs, once, not once per file written
    # list everything this run may write before writing it: a run killed halfway leaves no file
    # the next run would not know to remove
    _write_manifest(out_dir, previous | set(files))
    _write_files(out_dir, files, previous)
    fault_point("board")
    _remove_stale(out_dir, files, previous)
    n_ok = sum(b.n_ok for b in boards)
    n_failed = sum(b.n_failed for b in boards)
    log.debug("wrote %d boards to %s (%d finished, %d failed cells, %d files skipped)",
              len(pages), out_dir, n_ok, n_failed, len(problems))  # fmt: skip
    return BoardReport(pages=pages, skipped=problems, n_ok=n_ok, n_failed=n_failed,
                       index=out_dir / "README.md", files=[out_dir / rel for rel in sorted(files)])  # fmt: skip


def _previous_files(out_dir: Path) -> set[str]:
    """The files the previous generation wrote (from its manifest): only lines naming a file
    inside `out_dir` count (an absolute path, `..` or a symlink leading out is ignored)."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return set()
    names = set()
    check = confiner(out_dir)
    for line in manifest.read_text(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            if os.path.isabs(line) or ".." in line.split("/"):
                raise PathError(f"{line}: not a relative path inside the folder")
            check(line)
        except (PathError, OSError, ValueError) as exc:
            log.warning("%s: ignoring the line %r (%s)", manifest, line, exc)
            continue
        names.add(line)
    return names


def _write_files(out_dir: Path, files: Mapping[str, bytes], previous: set[str]) -> None:
    """Write the files that changed; identical ones are left alone (and keep their mtime).
    Every path must resolve inside `out_dir` (`files.confined`)."""
    check = confiner(out_dir)
    paths = {rel: check(rel) for rel in files}
    for folder in sorted({path.parent for path in paths.values()}):
        folder.mkdir(parents=True, exist_ok=True)
    for rel in sorted(files):
        path = paths[rel]
        if rel in previous:
            try:
                if path.read_bytes() == files[rel]:
                    continue
            except OSError:
                pass
        write_bytes_atomic(path, files[rel], fsync=False, mkdir=False, sweep=False)  # confined above


def _remove_stale(out_dir: Path, names: Iterable[str], previous: set[str]) -> None:
    """Remove what the previous generation wrote and this one did not; record this one's files.

    Only files listed in the previous manifest, inside `out_dir`, are ever deleted, so nothing a
    person put in the folder (or anything outside it) is touched.
    """
    names = sorted(names)
    for rel in sorted(previous - set(names)):
        try:
            stale = confined(out_dir, rel)
        except PathError as exc:
            log.warning("not removing %s: %s", rel, exc)
            continue
        if stale.is_symlink() or not stale.is_file():
            continue
        stale.unlink()
        for parent in stale.parents:
            if parent == out_dir or not parent.is_relative_to(out_dir) or any(parent.iterdir()):
                break
            parent.rmdir()
    _write_manifest(out_dir, set(names))


def _write_manifest(out_dir: Path, names: set[str]) -> None:
    manifest = out_dir / MANIFEST
    header = "# files written by `corebench leaderboard`; stale ones are removed on regeneration"
    listing = ("\n".join([header, *sorted(names)]) + "\n").encode()
    if not (manifest.is_file() and manifest.read_bytes() == listing):
        write_bytes_atomic(manifest, listing, fsync=False, root=out_dir)


def render_index(boards: list[Board], problems: list[tuple[Path, str]], results_dir: Path) -> str:
    """The README of the leaderboards folder: every board with its top methods."""
    n_ok = sum(b.n_ok for b in boards)
    n_failed = sum(b.n_failed for b in boards)
    out = ["# corebench leaderboards", ""]
    out.append(
        "Generated by `corebench leaderboard <results> --out <this folder>` from the result "
        "records; do not edit by hand. The same records always give byte-identical "
        "files. Each board: selection methods × fraction of the training set kept, robust "
        "accuracy per ε with 95% intervals, clean accuracy, the difference to random with paired "
        "significance, a ranking, selection stability, cost, a plot and the provenance of every number."
    )
    out.append("")
    out.append(
        f"{_count(len(boards), 'board')} from {_count(n_ok + n_failed, 'record')}: "
        f"{n_ok} finished, {n_failed} failed; {_count(len(problems), 'file')} skipped."
    )
    out.append("")
    if not boards:
        out += ["No result records found.", ""]
    for grid in sorted({b.grid for b in boards}):
        out += [f"## {_md(grid)}", ""]
        rows = []
        for b in (b for b in boards if b.grid == grid):
            link = f"[{_md(b.dataset)} · {_md(b.arch)} · {b.regime}]({slug(grid)}/{b.name}.md)"
            rows.append([link, _md(b.protocol.text()), f"{b.n_ok} / {b.n_failed}", str(len(b.seeds)),
                         _md(_top_text(b)) or MISSING])  # fmt: skip
        headers = ["board", "protocol", "finished / failed", "seeds", "highest mean robust accuracy per fraction [95% interval]"]
        out += [_table(headers, rows), ""]
    if problems:
        out += ["## Skipped files", ""]
        out += [f"- `{_md(rel_text(p, results_dir))}`: {_md(reason)}" for p, reason in problems]
        out.append("")
    return "\n".join(out)


def _top_text(b: Board) -> str:
    """Per ε and fraction, the method with the highest mean (collapsed models excluded)."""
    parts = []
    for eps in b.protocol.eps:
        tops = []
        for f in b.fractions:
            ranked = [lab for lab in b.methods if (lab, f) in b.rank[eps]]
            if ranked:
                lab = min(ranked, key=lambda x: (b.rank[eps][(x, f)], x))
                est = b.cells[(lab, f)].robust[eps]
                interval = f" [{_num(est.low)}, {_num(est.high)}]" if est.low is not None else ""
                tops.append(f"{_pct(f)}: {lab} {_num(est.mean)}{interval}")
        if tops:
            at = f"ε = {eps_text(eps)}: " if len(b.protocol.eps) > 1 else ""
            parts.append(at + "; ".join(tops))
    return " / ".join(parts)


# --------------------------------------------------------------------------- CLI summary


def render_summary(df: pd.DataFrame) -> str:
    """A short plain-text table per dataset × arch × regime (× protocol) × ε: robust accuracy by
    method and fraction, mean ± std over finished seeds; for the end of a `corebench run`."""
    if df is None or df.empty:
        return "No result records."
    blocks: list[str] = []
    keys = ["grid", "dataset", "arch", "regime", "protocol", "eps"]
    groups = sorted(df.groupby(keys, sort=True, dropna=False), key=lambda g: tuple(map(str, g[0])))
    many = df.groupby(keys[:4]).protocol.nunique().to_dict()
    for key, g in groups:
        ok = g[g.status == "ok"]
        aa_on = bool(g.autoattack_enabled.iloc[0])
        metric = "autoattack_acc" if aa_on else "pgd_acc"
        name = "AutoAttack" if aa_on else f"PGD-{int(g.pgd_steps.iloc[0])}"
        fractions = sorted(set(g.fraction[g.method != FULL_DATA]))
        head = f"{key[0]} · {key[1]} · {key[2]} · {key[3]}: {name} accuracy (%) at ε = {eps_text(key[5])}"
        if many.get(key[:4], 1) > 1:
            head += f" [{key[4]}]"
        n_failed = int((g.status != "ok").sum())
        if n_failed:
            head += f" — {_count(n_failed, 'failed cell')}"
        rows = []
        for lab in sorted(set(g.method_label[g.method != FULL_DATA])):
            sub = ok[ok.method_label == lab]
            rows.append([lab] + [_short(sub[metric][sub.fraction == f].tolist()) for f in fractions])
        full = ok[ok.method == FULL_DATA][metric].tolist()
        if full:
            rows.append(["full data (100%)"] + [_short(full)] * max(1, len(fractions)))
        headers = ["method"] + ([_pct(f) for f in fractions] if fractions else ["100%"])
        blocks.append(head + "\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n\n".join(blocks)


def _short(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return MISSING
    mean = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.1f}"
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"{mean:.1f} ± {std:.1f}"
