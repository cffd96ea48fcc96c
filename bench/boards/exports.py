"""A board's machine-readable exports: the CSV behind its page, RobustBench-style `model_info`
entries, and the plot's specification (drawn by `boards.plots`)."""

from __future__ import annotations

import json
import math

from corebench.boards.board import (
    Board,
)
from corebench.boards.plots import Panel, PlotSpec, Series
from corebench.boards.text import pct
from corebench.core.protocol import eps_text
from corebench.core.spec import FULL_DATA, slug

CSV_COLUMNS = (
    "grid", "dataset", "arch", "regime", "protocol", "method", "fraction", "eps", "n", "n_failed",
    "robust_metric", "robust_mean", "robust_low", "robust_high", "robust_std", "clean_mean", "clean_low",
    "clean_high", "diff_vs_random", "diff_ci_low", "diff_ci_high", "diff_n", "diff_basis", "p_value",
    "p_adjusted", "correction", "family_size", "significant", "rank",
    "collapsed", "jaccard_seeds", "jaccard_scorers", "scoring_runs", "scoring_s", "train_steps", "train_s",
)  # fmt: skip


def csv_text(board: Board) -> str:
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


def robustbench_entries(board: Board, page_rel: str) -> dict[str, str]:
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
        what = "the full training set" if lab == FULL_DATA else f"a {pct(f)} coreset chosen by {lab}"
        std = "" if math.isnan(robust.std) else f" (std {robust.std:.2f})"
        info = {
            "link": page_rel,
            "name": f"corebench {board.grid}: {lab} at {pct(f)}, {board.regime} training",
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


def plot_spec(board: Board) -> PlotSpec:
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
