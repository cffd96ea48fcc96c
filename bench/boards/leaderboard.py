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
`corebench.boards.board`; `boards.page` renders a board's page, `boards.exports` its CSV,
model_info entries and plot, `boards.text` the formats they share; this module writes them all. Determinism: same records in → byte-identical
files out. Everything is sorted by values taken from the records, floats are printed with
fixed formats (2 decimals for accuracies), nothing depends on time, the machine or the results
folder's location (paths are shown relative to it), and plots are SVG text (`corebench.boards.plots`).
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from corebench.boards.board import (
    Board,
    MethodFacts,
    aggregate,
    build_boards,
    rel_text,
)
from corebench.boards.exports import csv_text, plot_spec, robustbench_entries
from corebench.boards.page import render_board
from corebench.boards.plots import render_svg
from corebench.boards.text import MISSING, counted, md_table, md_text, num, pct
from corebench.core.errors import PathError, ResultsError
from corebench.core.faults import fault_point
from corebench.core.files import confined, confiner, sweep_folder, writable_folder
from corebench.core.protocol import eps_text
from corebench.core.spec import FULL_DATA, slug
from corebench.store.inputs import unchanged
from corebench.store.results import Stored, gc_paused, scan, write_bytes_atomic

log = logging.getLogger(__name__)

MANIFEST = ".corebench-generated"

@dataclass
class BoardReport:
    """What `generate_leaderboards` produced and what it had to leave out."""

    pages: list[Path]
    skipped: list[tuple[Path, str]]
    n_ok: int
    n_failed: int
    index: Path | None = None
    files: list[Path] = field(default_factory=list)


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
            files[f"{grid_dir}/{plot}"] = render_svg(plot_spec(board))
        files[page] = render_board(board, plot_name=plot, csv_name=f"{board.name}.csv", model_info_dir=mi_dir).encode()
        files[f"{grid_dir}/{board.name}.csv"] = csv_text(board).encode()
        for name, content in robustbench_entries(board, page).items():
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
        f"{counted(len(boards), 'board')} from {counted(n_ok + n_failed, 'record')}: "
        f"{n_ok} finished, {n_failed} failed; {counted(len(problems), 'file')} skipped."
    )
    out.append("")
    if not boards:
        out += ["No result records found.", ""]
    for grid in sorted({b.grid for b in boards}):
        out += [f"## {md_text(grid)}", ""]
        rows = []
        for b in (b for b in boards if b.grid == grid):
            link = f"[{md_text(b.dataset)} · {md_text(b.arch)} · {b.regime}]({slug(grid)}/{b.name}.md)"
            rows.append([link, md_text(b.protocol.text()), f"{b.n_ok} / {b.n_failed}", str(len(b.seeds)),
                         md_text(_top_text(b)) or MISSING])  # fmt: skip
        headers = ["board", "protocol", "finished / failed", "seeds", "highest mean robust accuracy per fraction [95% interval]"]
        out += [md_table(headers, rows), ""]
    if problems:
        out += ["## Skipped files", ""]
        out += [f"- `{md_text(rel_text(p, results_dir))}`: {md_text(reason)}" for p, reason in problems]
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
                interval = f" [{num(est.low)}, {num(est.high)}]" if est.low is not None else ""
                tops.append(f"{pct(f)}: {lab} {num(est.mean)}{interval}")
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
            head += f" — {counted(n_failed, 'failed cell')}"
        rows = []
        for lab in sorted(set(g.method_label[g.method != FULL_DATA])):
            sub = ok[ok.method_label == lab]
            rows.append([lab] + [_short(sub[metric][sub.fraction == f].tolist()) for f in fractions])
        full = ok[ok.method == FULL_DATA][metric].tolist()
        if full:
            rows.append(["full data (100%)"] + [_short(full)] * max(1, len(fractions)))
        headers = ["method"] + ([pct(f) for f in fractions] if fractions else ["100%"])
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
