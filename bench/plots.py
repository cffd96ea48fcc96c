"""Robust accuracy against fraction kept: one small PNG per leaderboard page.

The PNG must be a pure function of the numbers (same results → same bytes), so each plot is
drawn on a fresh `Figure` with the Agg canvas (no pyplot state), under matplotlib's default
style (a user's matplotlibrc cannot leak in), at a fixed size and dpi, with the PNG
'Software' tag dropped (the only metadata matplotlib writes). Colours follow the method's
place in the sorted label list, so a method keeps its colour across pages with the same
methods. Drawing dominates leaderboard time (benchmarks/README.md), and `errorbar`, `legend`
and `tight_layout` nearly double a plot's cost (they deep-copy handles or draw twice), so
error bars are one line collection per series, the legend is placed by hand, and many plots
are drawn in forked workers while the Markdown is written (`rendering`).
"""

from __future__ import annotations

import io
import math
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

FIGSIZE = (7.0, 3.6)  # inches
DPI = 90
_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)  # fmt: skip
PARALLEL_FROM = 8  # plots; below this a worker pool costs more than it saves
RANDOM_COLOR = "#7f7f7f"
FULL_DATA_COLOR = "#000000"


@dataclass(frozen=True)
class Series:
    """One method's line: mean and std of the robust accuracy at each fraction."""

    label: str
    fractions: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]  # NaN (one seed) is drawn without an error bar
    reference: bool = False  # the random baseline: grey, dashed


@dataclass(frozen=True)
class PlotSpec:
    """Everything one plot shows; `render_png(spec)` depends on nothing else."""

    title: str
    ylabel: str
    series: tuple[Series, ...]
    full: tuple[float, float] | None = None  # full-data (mean, std): a horizontal line


def render_png(spec: PlotSpec) -> bytes:
    """Draw the plot and return the PNG bytes (deterministic for a given spec)."""
    with matplotlib.rc_context(_DEFAULT_RC):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.08, 0.13, 0.62, 0.78))
        fractions = sorted({f for s in spec.series for f in s.fractions})
        labels = sorted(s.label for s in spec.series if not s.reference)
        colors = {lab: _PALETTE[i % len(_PALETTE)] for i, lab in enumerate(labels)}
        for s in spec.series:
            x = [100 * f for f in s.fractions]
            color = RANDOM_COLOR if s.reference else colors[s.label]
            ax.plot(
                x,
                s.mean,
                color=color,
                linestyle="--" if s.reference else "-",
                marker="s" if s.reference else "o",
                markersize=3.5,
                linewidth=1.2,
            )
            bars = [(xi, m, sd) for xi, m, sd in zip(x, s.mean, s.std, strict=True) if sd > 0]
            if bars:  # one collection per series: far cheaper to draw than errorbar()
                ax.vlines(
                    [b[0] for b in bars],
                    [b[1] - b[2] for b in bars],
                    [b[1] + b[2] for b in bars],
                    colors=color,
                    linewidth=0.8,
                )
        if spec.full is not None:
            mean, std = spec.full
            ax.axhline(mean, color=FULL_DATA_COLOR, linestyle=":", linewidth=1.2)
            if not math.isnan(std) and std > 0:
                ax.axhspan(mean - std, mean + std, color=FULL_DATA_COLOR, alpha=0.08, linewidth=0)
        if fractions and fractions[-1] / fractions[0] >= 10:
            ax.set_xscale("log")
        if fractions:
            ticks = [100 * f for f in fractions]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{t:g}%" for t in ticks])
            pad = (ticks[-1] / ticks[0]) ** 0.05 if ax.get_xscale() == "log" else None
            if pad is not None:
                ax.set_xlim(ticks[0] / pad, ticks[-1] * pad)
        ax.set_xlabel("fraction of the training set kept", fontsize=8)
        ax.set_ylabel(spec.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3, linewidth=0.5)
        fig.text(0.08, 0.94, spec.title, fontsize=9)  # not set_title: no title-position pass
        _legend(fig, spec, colors)
        buf = io.BytesIO()
        fig.savefig(
            buf, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 3}
        )
    return buf.getvalue()


def _legend(fig: Figure, spec: PlotSpec, colors: dict[str, str]) -> None:
    """A hand-placed legend: matplotlib's deep-copies every handle, half the plot's cost."""
    entries = [
        (s.label, RANDOM_COLOR if s.reference else colors[s.label], "--" if s.reference else "-",
         "s" if s.reference else "o")
        for s in spec.series
    ]  # fmt: skip
    if spec.full is not None:
        entries.append(("full data", FULL_DATA_COLOR, ":", ""))
    x0, y0, step = 0.72, 0.89, 0.055
    for i, (label, color, style, marker) in enumerate(entries[:15]):
        y = y0 - i * step
        fig.add_artist(
            Line2D([x0, x0 + 0.035], [y, y], transform=fig.transFigure, color=color,
                   linestyle=style, linewidth=1.2)
        )  # fmt: skip
        if marker:
            fig.add_artist(
                Line2D([x0 + 0.0175], [y], transform=fig.transFigure, color=color, marker=marker,
                       markersize=3.5, linestyle="")
            )  # fmt: skip
        fig.text(x0 + 0.045, y, label, fontsize=7, va="center")
    if len(entries) > 15:
        fig.text(x0 + 0.045, y0 - 15 * step, f"(+{len(entries) - 15} more)", fontsize=7, va="center")


@contextmanager
def rendering(
    specs: Sequence[PlotSpec], workers: int | None = None
) -> Iterator[Callable[[], list[bytes]]]:
    """Start drawing `specs` and yield a function that waits for their PNGs, in order.

    With enough plots the drawing happens in forked worker processes while the caller goes on
    (writing the Markdown and exports), so plots and the rest overlap. Each PNG is a pure
    function of its spec, so which process draws it does not change a byte. The first plot is
    drawn here, so the workers inherit warm font caches. `workers` None: one per available CPU
    (at most 4; env COREBENCH_PLOT_WORKERS overrides) once there are `PARALLEL_FROM` plots and
    the process has a single thread (forking a multi-threaded process can deadlock the child).
    """
    specs = list(specs)
    if workers is None:
        workers = int(os.environ.get("COREBENCH_PLOT_WORKERS", 0)) or min(_cpus(), 4)
        if len(specs) <= PARALLEL_FROM or threading.active_count() > 1:
            workers = 1
    if workers < 2 or len(specs) < 2 or "fork" not in mp.get_all_start_methods():
        yield lambda: [render_png(s) for s in specs]
        return
    first = render_png(specs[0])
    rest = specs[1:]
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    try:
        pending = pool.map(render_png, rest, chunksize=max(1, len(rest) // (4 * workers)))
        yield lambda: [first, *pending]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# matplotlib's defaults, so a user's matplotlibrc or style cannot change the bytes.
_DEFAULT_RC = {
    k: v
    for k, v in matplotlib.rcParamsDefault.items()
    if k not in ("backend", "backend_fallback", "interactive", "webagg.port", "webagg.address")
}
