"""Leaderboards: Markdown pages, plots and exports generated from the results store only.

Layout under `out_dir`:

    README.md                                  index of every board
    <grid>/<dataset>__<arch>__<regime>.md      one board: methods × fractions
    <grid>/<dataset>__<arch>__<regime>.png     robust accuracy against fraction (linked)
    <grid>/<dataset>__<arch>__<regime>.csv     the aggregated table behind the page
    <grid>/model_info/<dataset>/<norm>/<method>__f<fraction>__<arch>__<regime>.json
                                               RobustBench-style entry per method × fraction
    .corebench-generated                       list of the files above (stale ones are removed)

Protocols are never mixed. Records of one grid × dataset × arch × regime made under different
evaluation protocols (norm, ε, AutoAttack version or attack list, n_examples; see
`corebench.results`) go to separate boards: when a group has more than one protocol, *each* of its
pages (and exports) gets a protocol tag suffix, e.g.
`digits__resnet18__standard__linf-eps8_255-aa-standard-n1000.md`, and the page header states the
protocol. A group with one protocol keeps the plain name. Two records of one cell (same key and
protocol, in two folders) are an error naming both files; a record whose path does not spell
its key (a copy such as `seed0 copy.json`) is skipped and reported.

Every file written or removed resolves inside `out_dir` (`corebench.files.confined`); the
manifest is only honoured for lines naming files inside it.

Determinism: same records in → byte-identical files out. Everything is sorted by values taken
from the records, floats are printed with fixed formats (2 decimals for accuracies), nothing
depends on time, the machine or the results folder's location (paths are shown relative to
it), and plots come from `corebench.plots` (fresh figure, default style, no PNG metadata).

Numbers: mean ± sample std (ddof=1) over the seeds that finished; n is that count. The
difference to random is paired over seeds (same seed and fraction) with a 95% t-interval
(`corebench.stats`); † marks an interval that excludes zero. Rank 1 is the highest mean robust
accuracy at a fraction (ties share the average rank, compared at the printed precision).
Random is the `random` method's row (label `random` when several random rows exist, else the
first label in sort order); full data is the `full` method, shown as a reference line.
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

from corebench.errors import PathError, ResultsError
from corebench.faults import fault_point
from corebench.files import confined, writable_folder
from corebench.plots import PlotSpec, Series, rendering
from corebench.protocol import Protocol, eps_text
from corebench.results import flatten, refuse_duplicates, scan, write_bytes_atomic
from corebench.spec import FULL_DATA, slug, stable_hash
from corebench.stats import PairedDiff, paired_diff

log = logging.getLogger(__name__)

RANDOM = "random"
MANIFEST = ".corebench-generated"
DAGGER = "†"
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


# --------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class CellStats:
    """One method × fraction over its seeds."""

    n: int
    n_failed: int
    robust: tuple[float, float]  # mean, std (NaN when undefined)
    clean: tuple[float, float]
    pgd: tuple[float, float]
    diff: PairedDiff | None  # against random, paired over seeds; None for random itself
    rank: float | None


@dataclass
class Board:
    """One page: a grid × dataset × arch × regime × protocol, aggregated."""

    grid: str
    dataset: str
    arch: str
    regime: str
    protocol: Protocol
    name: str = ""
    tag: str = ""  # protocol tag when the group has several protocols
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # filled by aggregate()
    methods: list[str] = field(default_factory=list)  # in ranking order
    fractions: list[float] = field(default_factory=list)
    random_label: str | None = None
    cells: dict[tuple[str, float], CellStats] = field(default_factory=dict)
    full: CellStats | None = None
    mean_rank: dict[str, float | None] = field(default_factory=dict)
    gain: dict[str, float | None] = field(default_factory=dict)
    best: dict[float, list[str]] = field(default_factory=dict)
    best_clean: dict[float, list[str]] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.protocol.metric

    @property
    def metric_name(self) -> str:
        return self.protocol.metric_name

    @property
    def n_ok(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def n_failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.rows})


def aggregate(board: Board) -> None:
    """Fill the board's statistics from its rows (see the module docstring for the rules)."""
    ok: dict[tuple[str, float], dict[int, dict]] = defaultdict(dict)
    failed: Counter[tuple[str, float]] = Counter()
    labels: set[str] = set()
    random_labels: set[str] = set()
    for r in board.rows:
        if r["method"] == FULL_DATA:
            key = (FULL_DATA, 1.0)
        else:
            key = (r["method_label"], r["fraction"])
            labels.add(r["method_label"])
            if r["method"] == RANDOM:
                random_labels.add(r["method_label"])
        if r["status"] == "ok":
            ok[key][r["seed"]] = r
        else:
            failed[key] += 1
    board.fractions = sorted({r["fraction"] for r in board.rows if r["method"] != FULL_DATA})
    if random_labels:
        board.random_label = RANDOM if RANDOM in random_labels else sorted(random_labels)[0]

    metric = board.metric

    def stats(key: tuple[str, float]) -> CellStats:
        by_seed = ok.get(key, {})
        seeds = sorted(by_seed)
        rows = [by_seed[s] for s in seeds]
        diff = None
        if board.random_label is not None and key[0] not in (board.random_label, FULL_DATA):
            ref = ok.get((board.random_label, key[1]), {})
            common = [s for s in seeds if s in ref]
            diff = paired_diff(
                [by_seed[s][metric] for s in common], [ref[s][metric] for s in common]
            )
        return CellStats(
            n=len(rows),
            n_failed=failed.get(key, 0),
            robust=_mean_std([r[metric] for r in rows]),
            clean=_mean_std([r["clean_acc"] for r in rows]),
            pgd=_mean_std([r["pgd_acc"] for r in rows if r["pgd_acc"] is not None]),
            diff=diff,
            rank=None,
        )

    cells = {(lab, f): stats((lab, f)) for lab in sorted(labels) for f in board.fractions}
    has_full = any(r["method"] == FULL_DATA for r in board.rows)
    board.full = stats((FULL_DATA, 1.0)) if has_full else None

    # ranks per fraction, on the printed precision so displayed ties are ties
    ranks: dict[str, list[float]] = defaultdict(list)
    for f in board.fractions:
        present = {lab: round(cells[(lab, f)].robust[0], 2) for lab in labels if cells[(lab, f)].n}
        for lab, rank in _average_ranks(present).items():
            cells[(lab, f)] = _with_rank(cells[(lab, f)], rank)
            ranks[lab].append(rank)
        top = max(present.values(), default=None)
        board.best[f] = sorted(lab for lab, v in present.items() if v == top)
        clean = {lab: round(cells[(lab, f)].clean[0], 2) for lab in present}
        top_clean = max(clean.values(), default=None)
        board.best_clean[f] = sorted(lab for lab, v in clean.items() if v == top_clean)
    board.cells = cells
    for lab in sorted(labels):
        board.mean_rank[lab] = math.fsum(ranks[lab]) / len(ranks[lab]) if ranks[lab] else None
        gains = [c.diff.mean for f in board.fractions if (c := cells[(lab, f)]).diff and c.diff.n]
        board.gain[lab] = math.fsum(gains) / len(gains) if gains else None
    board.methods = sorted(
        labels,
        key=lambda lab: (board.mean_rank[lab] is None, board.mean_rank[lab] or 0.0, lab),
    )


def _with_rank(c: CellStats, rank: float) -> CellStats:
    return CellStats(c.n, c.n_failed, c.robust, c.clean, c.pgd, c.diff, rank)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); NaN where undefined. math.fsum: order-independent sums."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _average_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Rank 1 = highest; tied values share the mean of the ranks they span."""
    order = sorted(values, key=lambda k: (-values[k], k))
    ranks: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


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


def _cell_text(c: CellStats | None, which: str, bold: bool) -> str:
    if c is None or (c.n == 0 and c.n_failed == 0):
        return MISSING
    if c.n == 0:
        return f"failed ({c.n_failed})"
    mean, std = getattr(c, which)
    m = f"**{_num(mean)}**" if bold else _num(mean)
    count = f"n={c.n}" + (f", {c.n_failed} failed" if c.n_failed else "")
    if c.n == 1:
        return f"{m} ({count})"
    return f"{m} ± {_num(std)} ({count})"


def _diff_text(d: PairedDiff | None) -> str:
    if d is None or d.n == 0:
        return MISSING
    if d.n == 1 or d.low is None or d.high is None:
        return f"{_num(d.mean, True)} (n=1)"
    mark = DAGGER if d.significant else ""
    return f"{_num(d.mean, True)}{mark} [{_num(d.low, True)}, {_num(d.high, True)}] (n={d.n})"


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


def render_board(board: Board, *, png_name: str | None, csv_name: str, model_info_dir: str) -> str:
    """The Markdown of one board (aggregate() must have run)."""
    proto = board.protocol
    metric = board.metric_name
    title = f"{board.grid} · {board.dataset} · {board.arch} · {board.regime}"
    if board.tag:
        title += f" · {board.tag}"
    out = [f"# {_md(title)}", ""]
    out.append(
        f"{metric} (%) of `{_md(board.arch)}` trained with regime `{board.regime}` on coresets "
        f"of `{_md(board.dataset)}` chosen by each selection method (rows), by fraction of the "
        f"training set kept (columns). Evaluation protocol: {proto.text()}."
    )
    out.append("")
    out.append(
        "Generated by `corebench leaderboard` from the result records; do not edit by hand. "
        "Cells: mean ± sample std over seeds (n = seeds that finished); "
        "**bold**: best in the column."
    )
    out.append("")
    if board.full is not None and (board.full.n or board.full.n_failed):
        f = board.full
        if f.n:
            out.append(
                f"**Full-data reference** (100% of the training set, method `{FULL_DATA}`): "
                f"{metric} {_cell_text(f, 'robust', False)}, "
                f"clean accuracy {_cell_text(f, 'clean', False)}."
            )
        else:
            out.append(f"**Full-data reference**: failed ({f.n_failed} seeds).")
    else:
        out.append("**Full-data reference**: none in the results.")
    out.append("")
    if board.random_label is None:
        out.append(f"No `{RANDOM}` baseline on this board: differences to random are not shown.")
        out.append("")

    headers = ["method"] + [_pct(f) for f in board.fractions]

    def label(lab: str) -> str:
        return f"{_md(lab)} (baseline)" if lab == board.random_label else _md(lab)

    for heading, which, best in (
        (f"{metric} (%)", "robust", board.best),
        ("Clean accuracy (%)", "clean", board.best_clean),
    ):
        rows = [
            [label(lab)]
            + [
                _cell_text(board.cells.get((lab, f)), which, lab in best.get(f, ()))
                for f in board.fractions
            ]
            for lab in board.methods
        ]
        out += [f"## {heading}", "", _table(headers, rows), ""]

    diffs = [
        board.cells[(lab, f)].diff
        for lab in board.methods
        for f in board.fractions
        if lab != board.random_label
    ]
    present = [d for d in diffs if d is not None and d.n]
    if board.random_label is not None:
        out += [f"## Difference to random ({metric}, percentage points)", ""]
        out.append(
            f"Method minus `{_md(board.random_label)}`, paired over seeds (same seed and fraction): "
            f"mean [95% t-interval] (n = pairs). {DAGGER}: the interval excludes zero."
        )
        if present and all(d.n < 2 for d in present):
            out.append("Every comparison here has a single seed: no significance is claimed.")
        elif any(d.n < 2 for d in present):
            out.append("Comparisons with n=1 have no interval: no significance is claimed for them.")
        out.append("")
        rows = [
            [_md(lab)] + [_diff_text(board.cells[(lab, f)].diff) for f in board.fractions]
            for lab in board.methods
            if lab != board.random_label
        ]
        out += [_table(headers, rows), ""]

    out += ["## Ranking", ""]
    out.append(
        f"Rank 1 = highest mean {metric} at a fraction (ties share the average rank); mean rank "
        "over the fractions the method has; gain = mean over those fractions of the paired "
        "difference to random."
    )
    out.append("")
    rank_rows = []
    position = 0
    for lab in board.methods:
        mr = board.mean_rank[lab]
        position += 1
        covered = sum(1 for f in board.fractions if board.cells[(lab, f)].n)
        gain = "(reference)" if lab == board.random_label else _num(board.gain.get(lab), True)
        rank_rows.append(
            [str(position) if mr is not None else MISSING, label(lab), _num(mr), f"{covered}/{len(board.fractions)}", gain]
        )
    out += [
        _table(["#", "method", "mean rank", "fractions", "mean gain over random (pp)"], rank_rows),
        "",
    ]

    out += [f"## {metric} against fraction kept", ""]
    if png_name:
        out += [f"![{metric} against fraction kept]({png_name})", ""]
    out.append(
        f"Data: [{csv_name}]({csv_name}) (aggregated table) · RobustBench-style entries: "
        f"[{model_info_dir}/]({model_info_dir}/)"
    )
    out.append("")

    failed = sorted(
        (r for r in board.rows if r["status"] != "ok"),
        key=lambda r: (r["method_label"], r["fraction"], r["seed"]),
    )
    if failed:
        out += ["## Failed cells", ""]
        rows = [
            [_md(r["method_label"]), _pct(r["fraction"]), str(r["seed"]), _md(r["error"] or "")]
            for r in failed
        ]
        out += [_table(["method", "fraction", "seed", "error"], rows), ""]

    out += ["---", "", "## Provenance", ""]
    out += _provenance(board)
    out.append("")
    return "\n".join(out)


def _provenance(board: Board) -> list[str]:
    recs = board.records
    grids = sorted({f"`{r['grid']['name']}` from `{r['grid'].get('source') or '?'}`" for r in recs})
    lines = [f"- Grid file: {', '.join(grids)}"]
    n_eval = sorted({r["metrics"]["n_eval"] for r in recs if r["status"] == "ok" and r["metrics"]})
    evaluated = f"; examples actually evaluated: {', '.join(str(n) for n in n_eval)}" if n_eval else ""
    lines.append(f"- Attack (evaluation): {board.protocol.text()}{evaluated}")
    lines += _settings_lines("Evaluation settings", (r["config"]["evaluation"] for r in recs))
    lines += _settings_lines(
        f"Training (regime `{board.regime}`)", (r["config"].get("training") for r in recs)
    )
    unused = " (used by pgd_at and trades; unused by standard training)" if board.regime == "standard" else ""
    lines += _settings_lines(f"Training attack{unused}", (r["config"].get("attack") for r in recs))
    lines += _settings_lines("Scoring run", (r["config"].get("scoring") for r in recs))
    scorers = sorted({r["cell"]["scoring_arch"] for r in recs if r["cell"]["method"] != FULL_DATA})
    if scorers:
        lines.append(f"- Scoring architectures: {', '.join(_md(s) for s in scorers)}")
    by_method: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        if r["cell"]["method"] != FULL_DATA:
            by_method[r["cell"]["method_label"]].append(r["method_options"])
    if by_method:
        lines.append("- Method options:")
        for lab in sorted(by_method):
            distinct = _settings(by_method[lab])
            text = "; ".join(t if len(distinct) == 1 else f"{t} ({n} records)" for n, t in distinct)
            lines.append(f"  - `{_md(lab)}`: {_md(text)}")
    distinct = _settings((r["versions"] for r in recs), drop=("git_commit",))
    if len(distinct) == 1:
        lines.append(f"- Package versions: {_md(distinct[0][1])}")
    else:
        lines.append("- Package versions:")
        lines += [f"  - {n} records: {_md(t)}" for n, t in distinct]
    commits = Counter(str((r["versions"] or {}).get("git_commit")) for r in recs)
    lines.append(
        "- Git commit(s): "
        + ", ".join(f"`{c}` ({n} records)" for c, n in sorted(commits.items(), key=lambda t: (-t[1], t[0])))
    )
    devices = Counter(str(r.get("device")) for r in recs)
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


# --------------------------------------------------------------------------- exports


def _csv(board: Board) -> str:
    cols = [
        "grid", "dataset", "arch", "regime", "protocol", "method", "fraction", "n", "n_failed",
        "robust_metric", "robust_mean", "robust_std", "clean_mean", "clean_std", "pgd_mean",
        "pgd_std", "diff_vs_random", "diff_ci_low", "diff_ci_high", "diff_n", "significant",
        "rank",
    ]  # fmt: skip
    metric = board.protocol.attack_name.lower().replace("-", "")
    entries = [(lab, f, board.cells[(lab, f)]) for lab in board.methods for f in board.fractions]
    if board.full is not None:
        entries.append((FULL_DATA, 1.0, board.full))
    lines = [",".join(cols)]
    for lab, f, c in entries:
        if c.n == 0 and c.n_failed == 0:
            continue
        d = c.diff
        values = [
            board.grid, board.dataset, board.arch, board.regime, board.protocol.key,
            lab, f"{f:g}", str(c.n), str(c.n_failed), metric,
            *(_f4(v) for v in (*c.robust, *c.clean, *c.pgd)),
            _f4(d.mean if d and d.n else None), _f4(d.low if d else None),
            _f4(d.high if d else None), str(d.n) if d else "",
            ("true" if d.significant else "false") if d and d.n >= 2 else "",
            _f4(c.rank),
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
    """RobustBench `model_info` JSON per method × fraction, keyed by file name.

    Follows RobustBench's own format (model_info/cifar10/Linf/*.json, written by its
    `update_json`): its field order, `indent=2`, ε as "8/255", and accuracies as *strings*
    rounded to 2 decimals (`str(round(acc, 2))`), so the files drop into its tooling. Our own
    records keep numbers as numbers; only this export uses strings. `reported` is the same
    number as `autoattack_acc`: corebench is the party reporting it.
    """
    out: dict[str, str] = {}
    suffix = f"__{board.tag}" if board.tag else ""
    proto = board.protocol
    entries = [(lab, f, board.cells[(lab, f)]) for lab in board.methods for f in board.fractions]
    if board.full is not None:
        entries.append((FULL_DATA, 1.0, board.full))
    attack = proto.attack_text(code=False)
    for lab, f, c in entries:
        if c.n == 0:
            continue
        what = "the full training set" if lab == FULL_DATA else f"a {_pct(f)} coreset chosen by {lab}"
        std = "" if math.isnan(c.robust[1]) else f" (std {c.robust[1]:.2f})"
        info = {
            "link": page_rel,
            "name": f"corebench {board.grid}: {lab} at {_pct(f)}, {board.regime} training",
            "authors": "",
            "additional_data": False,
            "number_forward_passes": 1,
            "dataset": board.dataset,
            "venue": f"corebench grid {board.grid}",
            "architecture": board.arch,
            "eps": eps_text(proto.eps),
            "clean_acc": str(round(c.clean[0], 2)),
            "reported": str(round(c.robust[0], 2)),
            "autoattack_acc": str(round(c.robust[0], 2)),
            "footnote": (
                f"Trained ({board.regime}) on {what}. Mean over {c.n} seed(s){std}; "
                f"{attack} on the first {proto.n_examples} test examples."
            ),
        }
        name = f"{slug(lab)}__f{f:g}__{slug(board.arch)}__{slug(board.regime)}{suffix}.json"
        out[name] = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    return out


def _plot_spec(board: Board) -> PlotSpec:
    series = []
    for lab in sorted(board.methods):
        fr = [f for f in board.fractions if board.cells[(lab, f)].n]
        if not fr:
            continue
        cs = [board.cells[(lab, f)] for f in fr]
        series.append(
            Series(
                label=lab,
                fractions=tuple(fr),
                mean=tuple(c.robust[0] for c in cs),
                std=tuple(c.robust[1] for c in cs),
                reference=lab == board.random_label,
            )
        )
    full = board.full.robust if board.full is not None and board.full.n else None
    title = f"{board.dataset} · {board.arch} · {board.regime}" + (f" · {board.tag}" if board.tag else "")
    return PlotSpec(title=title, ylabel=f"{board.metric_name} (%)", series=tuple(series), full=full)


# --------------------------------------------------------------------------- generation


def build_boards(
    records: list[dict], problems: list[tuple[Path, str]], results_dir: Path
) -> tuple[list[Board], list[tuple[Path, str]]]:
    """Group valid records into boards (one per protocol); two records of one cell are a
    `ResultsError` naming both (`results.refuse_duplicates`), never a silent pick."""
    groups: dict[tuple[str, str, str, str], dict[str, Board]] = defaultdict(dict)
    refuse_duplicates(records)
    problems = list(problems)
    for rec in records:
        row = flatten(rec)
        key = (row["grid"], row["dataset"], row["arch"], row["regime"])
        pkey = row["protocol"]
        board = groups[key].get(pkey)
        if board is None:
            proto = Protocol.of(rec["config"]["evaluation"])
            board = groups[key][pkey] = Board(*key, protocol=proto)
        board.rows.append(row)
        board.records.append(rec)
    boards: list[Board] = []
    for key in sorted(groups):
        by_proto = groups[key]
        stem = "__".join(slug(part) for part in key[1:])
        tags = {p: b.protocol.tag() for p, b in by_proto.items()}
        if len(set(tags.values())) < len(tags):  # two protocols print alike: make them unique
            tags = {p: f"{t}-{stable_hash(p, 6)}" for p, t in tags.items()}
        for pkey in sorted(by_proto, key=lambda p: (tags[p], p)):
            board = by_proto[pkey]
            board.tag = tags[pkey] if len(by_proto) > 1 else ""
            board.name = stem + (f"__{board.tag}" if board.tag else "")
            boards.append(board)
    _attribute_skipped(boards, problems, results_dir)
    return boards, sorted(problems, key=lambda p: str(p[0]))


def _attribute_skipped(boards: list[Board], problems: list[tuple[Path, str]], results_dir: Path) -> None:
    """A skipped file belongs to the boards whose records share its regime folder."""
    if not problems:
        return
    folders: dict[Path, list[Board]] = defaultdict(list)
    for board in boards:
        regime_dirs = {os.path.dirname(os.path.dirname(os.path.dirname(r["_path"]))) for r in board.records}
        for d in sorted(regime_dirs):
            folders[Path(d)].append(board)
    for path, reason in sorted(problems, key=lambda p: str(p[0])):
        for parent in Path(path).parents:
            if parent in folders:
                for board in folders[parent]:
                    board.skipped.append((_rel(path, results_dir), reason))
                break


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def generate_leaderboards(
    results_dir: str | Path, out_dir: str | Path, *, strict: bool = False
) -> BoardReport:
    """Write every board, its plot and exports, and the index; see the module docstring."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    records, problems = scan(results_dir)
    # The records live until the end: keep the collector from re-walking them (and forked plot
    # workers from touching their pages); undone in `finally`.
    freeze = gc.get_freeze_count() == 0  # never unfreeze what someone else froze
    if freeze:
        gc.freeze()
    try:
        return _generate(results_dir, out_dir, records, problems, strict)
    finally:
        if freeze:
            gc.unfreeze()


def _generate(
    results_dir: Path, out_dir: Path, records: list[dict], problems: list[tuple[Path, str]], strict: bool
) -> BoardReport:
    boards, problems = build_boards(records, problems, results_dir)
    if strict and problems:
        path, reason = problems[0]
        raise ResultsError(f"{path}: {reason}")
    out_dir = writable_folder(out_dir, "--out")
    for board in boards:
        aggregate(board)
    plots = {
        f"{slug(b.grid)}/{b.name}.png": _plot_spec(b)
        for b in boards
        if any(c.n for c in b.cells.values()) or (b.full is not None and b.full.n)
    }
    files: dict[str, bytes] = {}
    pages: list[Path] = []
    with rendering(list(plots.values())) as wait_for_plots:  # drawn while the rest is written
        for board in boards:
            grid_dir = slug(board.grid)
            mi_dir = f"model_info/{slug(board.dataset)}/{slug(board.protocol.norm)}"
            page = f"{grid_dir}/{board.name}.md"
            png = f"{board.name}.png" if f"{grid_dir}/{board.name}.png" in plots else None
            files[page] = render_board(
                board, png_name=png, csv_name=f"{board.name}.csv", model_info_dir=mi_dir
            ).encode()
            files[f"{grid_dir}/{board.name}.csv"] = _csv(board).encode()
            for name, content in _robustbench_entries(board, page).items():
                files[f"{grid_dir}/{mi_dir}/{name}"] = content.encode()
            pages.append(out_dir / page)
        files["README.md"] = render_index(boards, problems, results_dir).encode()
        previous = _previous_files(out_dir)
        # list everything this run may write before writing it: a run killed halfway leaves
        # no file the next run would not know to remove
        _write_manifest(out_dir, previous | set(files) | set(plots))
        _write_files(out_dir, files, previous)
        fault_point("board")
        pngs = dict(zip(plots, wait_for_plots(), strict=True))
    _write_files(out_dir, pngs, previous)
    files.update(pngs)
    _remove_stale(out_dir, files, previous)
    n_ok = sum(b.n_ok for b in boards)
    n_failed = sum(b.n_failed for b in boards)
    log.debug(
        "wrote %d boards to %s (%d finished, %d failed cells, %d files skipped)",
        len(pages), out_dir, n_ok, n_failed, len(problems),
    )  # fmt: skip
    return BoardReport(
        pages=pages,
        skipped=problems,
        n_ok=n_ok,
        n_failed=n_failed,
        index=out_dir / "README.md",
        files=[out_dir / rel for rel in sorted(files)],
    )


def _previous_files(out_dir: Path) -> set[str]:
    """The files the previous generation wrote (from its manifest): only lines naming a file
    inside `out_dir` count (an absolute path, `..` or a symlink leading out is ignored)."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return set()
    names = set()
    for line in manifest.read_text(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            if Path(line).is_absolute() or ".." in Path(line).parts:
                raise PathError(f"{line}: not a relative path inside the folder")
            confined(out_dir, line)
        except (PathError, OSError, ValueError) as exc:
            log.warning("%s: ignoring the line %r (%s)", manifest, line, exc)
            continue
        names.add(line)
    return names


def _write_files(out_dir: Path, files: Mapping[str, bytes], previous: set[str]) -> None:
    """Write the files that changed; identical ones are left alone (and keep their mtime).
    Every path must resolve inside `out_dir` (`files.confined`)."""
    paths = {rel: confined(out_dir, rel) for rel in files}
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
        write_bytes_atomic(path, files[rel], fsync=False, mkdir=False, root=out_dir)


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
    """The README of the leaderboards folder: every board with its best methods."""
    n_ok = sum(b.n_ok for b in boards)
    n_failed = sum(b.n_failed for b in boards)
    out = ["# corebench leaderboards", ""]
    out.append(
        "Generated by `corebench leaderboard <results> --out <this folder>` from the result "
        "records; do not edit by hand. The same records always give byte-identical "
        "files. Each board: selection methods × fraction of the training set kept, robust "
        "accuracy mean ± std over seeds, clean accuracy, the difference to random with paired "
        "significance, a ranking, a plot and the provenance of every number."
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
            best = "; ".join(
                f"{_pct(f)}: {' = '.join(_md(x) for x in b.best[f])} ({_num(b.cells[(b.best[f][0], f)].robust[0])})"
                for f in b.fractions
                if b.best.get(f)
            )
            rows.append(
                [
                    link,
                    _md(b.protocol.text()),
                    f"{b.n_ok} / {b.n_failed}",
                    str(len(b.seeds)),
                    best or MISSING,
                ]
            )
        headers = ["board", "protocol", "finished / failed", "seeds", "best robust accuracy per fraction"]
        out += [_table(headers, rows), ""]
    if problems:
        out += ["## Skipped files", ""]
        out += [f"- `{_md(_rel(p, results_dir))}`: {_md(reason)}" for p, reason in problems]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- CLI summary


def render_summary(df: pd.DataFrame) -> str:
    """A short plain-text table per dataset × arch × regime (× protocol): robust accuracy by
    method and fraction, mean ± std over finished seeds; for the end of a `corebench run`."""
    if df is None or df.empty:
        return "No result records."
    blocks: list[str] = []
    keys = ["grid", "dataset", "arch", "regime", "protocol"]
    groups = sorted(df.groupby(keys, sort=True, dropna=False), key=lambda g: tuple(map(str, g[0])))
    many = df.groupby(keys[:4]).protocol.nunique().to_dict()
    for key, g in groups:
        ok = g[g.status == "ok"]
        aa_on = bool(g.autoattack_enabled.iloc[0])
        metric = "autoattack_acc" if aa_on else "pgd_acc"
        name = "AutoAttack" if aa_on else f"PGD-{int(g.pgd_steps.iloc[0])}"
        fractions = sorted(set(g.fraction[g.method != FULL_DATA]))
        head = f"{key[0]} · {key[1]} · {key[2]} · {key[3]}: {name} accuracy (%)"
        if many.get(key[:4], 1) > 1:
            head += f" [{key[4]}]"
        n_failed = int((g.status != "ok").sum())
        if n_failed:
            head += f" — {_count(n_failed, 'failed cell')}"
        rows = []
        labels = sorted(set(g.method_label[g.method != FULL_DATA]))
        for lab in labels:
            sub = ok[ok.method_label == lab]
            row = [lab]
            for f in fractions:
                vals = sub[metric][sub.fraction == f].tolist()
                row.append(_short(vals))
            rows.append(row)
        full = ok[ok.method == FULL_DATA][metric].tolist()
        if full:
            rows.append(["full data (100%)"] + [_short(full)] * max(1, len(fractions)))
        headers = ["method"] + ([_pct(f) for f in fractions] if fractions else ["100%"])
        blocks.append(head + "\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n\n".join(blocks)


def _short(values: list[float]) -> str:
    mean, std = _mean_std(values)
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {std:.1f}"
