"""Robust accuracy against fraction kept: one small SVG per leaderboard page, written directly.

A board's plot is a few polylines, markers and interval bars, so it is written as SVG text
here instead of drawn by a plotting library: the file is a pure function of the numbers (same
results → same bytes, no font rasterisation, no metadata), renders crisply wherever Markdown
does, and costs well under a millisecond where a matplotlib PNG cost tens of milliseconds
(benchmarks/README.md). One panel per ε; colours follow a method's place in the sorted label
list, so a method keeps its colour across pages with the same methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)  # fmt: skip
RANDOM_COLOR = "#7f7f7f"
FULL_DATA_COLOR = "#000000"
PANEL_W, PANEL_H = 330, 250  # px per panel
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 30, 40  # plot-area margins inside a panel
LEGEND_W, LEGEND_ROWS = 170, 16
FONT = 'font-family="DejaVu Sans, Arial, Helvetica, sans-serif"'


@dataclass(frozen=True)
class Series:
    """One method's line: the mean robust accuracy at each fraction and its interval."""

    label: str
    fractions: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]  # interval ends (NaN: no interval)
    high: tuple[float, ...]
    reference: bool = False  # the random baseline: grey, dashed


@dataclass(frozen=True)
class Panel:
    """One ε: its series and the full-data reference (mean, low, high) drawn as a line."""

    title: str
    series: tuple[Series, ...]
    full: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class PlotSpec:
    """Everything one plot shows; `render_svg(spec)` depends on nothing else."""

    title: str
    ylabel: str
    panels: tuple[Panel, ...]


def render_svg(spec: PlotSpec) -> bytes:
    """The plot as SVG bytes (deterministic for a given spec)."""
    labels = sorted({s.label for p in spec.panels for s in p.series if not s.reference})
    colors = {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}
    width = PANEL_W * len(spec.panels) + LEGEND_W
    height = PANEL_H + 22
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT} font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.1f}" y="15" text-anchor="middle" font-size="13">{escape(spec.title)}</text>',
    ]
    for i, panel in enumerate(spec.panels):
        out += _panel(panel, spec.ylabel, colors, x0=i * PANEL_W, y0=22)
    out += _legend(spec, colors, x0=PANEL_W * len(spec.panels) + 8, y0=40)
    out.append("</svg>")
    return ("\n".join(out) + "\n").encode()


def _panel(panel: Panel, ylabel: str, colors: dict[str, str], x0: float, y0: float) -> list[str]:
    fractions = sorted({f for s in panel.series for f in s.fractions})
    values = [v for s in panel.series for v in (*s.mean, *s.low, *s.high) if _finite(v)]
    if panel.full is not None:
        values += [v for v in panel.full if _finite(v)]
    top = _nice_top(max(values, default=1.0))
    left, right = x0 + LEFT, x0 + PANEL_W - RIGHT
    upper, lower = y0 + TOP, y0 + PANEL_H - BOTTOM
    lo_f, hi_f = (fractions[0], fractions[-1]) if fractions else (0.0, 1.0)
    span = hi_f - lo_f or 1.0

    def x(f: float) -> float:
        return left + (0.5 if hi_f == lo_f else (f - lo_f) / span) * (right - left - 16) + 8

    def y(v: float) -> float:
        return lower - (max(v, 0.0) / top) * (lower - upper)

    out = [f'<text x="{(left + right) / 2:.1f}" y="{upper - 8:.1f}" text-anchor="middle">{escape(panel.title)}</text>']
    step = top / 5
    for k in range(6):  # horizontal grid and y tick labels
        v = k * step
        out.append(f'<line x1="{left:.1f}" y1="{y(v):.1f}" x2="{right:.1f}" y2="{y(v):.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{left - 4:.1f}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for f in fractions:  # x ticks at the fractions on the board
        out.append(f'<line x1="{x(f):.1f}" y1="{lower:.1f}" x2="{x(f):.1f}" y2="{lower + 4:.1f}" stroke="#000000"/>')
        out.append(f'<text x="{x(f):.1f}" y="{lower + 15:.1f}" text-anchor="middle">{100 * f:g}</text>')
    out.append(f'<rect x="{left:.1f}" y="{upper:.1f}" width="{right - left:.1f}" height="{lower - upper:.1f}" '
               'fill="none" stroke="#000000"/>')  # fmt: skip
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{lower + 31:.1f}" text-anchor="middle">fraction kept (%)</text>')
    ymid = (upper + lower) / 2
    out.append(f'<text x="{x0 + 12:.1f}" y="{ymid:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 {x0 + 12:.1f} {ymid:.1f})">{escape(ylabel)}</text>')  # fmt: skip
    if panel.full is not None and _finite(panel.full[0]):
        yf = y(panel.full[0])
        out.append(f'<line x1="{left:.1f}" y1="{yf:.1f}" x2="{right:.1f}" y2="{yf:.1f}" '
                   f'stroke="{FULL_DATA_COLOR}" stroke-dasharray="2,3"/>')  # fmt: skip
    for s in panel.series:
        color = RANDOM_COLOR if s.reference else colors[s.label]
        points = [(x(f), y(m)) for f, m in zip(s.fractions, s.mean, strict=True) if _finite(m)]
        dash = ' stroke-dasharray="6,3"' if s.reference else ""
        if len(points) > 1:
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.4"{dash}/>')
        for f, lo, hi in zip(s.fractions, s.low, s.high, strict=True):
            if _finite(lo) and _finite(hi):
                px = x(f)
                out.append(f'<path d="M{px:.1f},{y(lo):.1f}V{y(hi):.1f}M{px - 3:.1f},{y(lo):.1f}H{px + 3:.1f}'
                           f'M{px - 3:.1f},{y(hi):.1f}H{px + 3:.1f}" stroke="{color}" fill="none"/>')  # fmt: skip
        for px, py in points:
            if s.reference:
                out.append(f'<rect x="{px - 2.5:.1f}" y="{py - 2.5:.1f}" width="5" height="5" fill="{color}"/>')
            else:
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.6" fill="{color}"/>')
    return out


def _legend(spec: PlotSpec, colors: dict[str, str], x0: float, y0: float) -> list[str]:
    entries: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for s in (s for p in spec.panels for s in p.series):
        if s.label not in seen:
            seen.add(s.label)
            entries.append((s.label, RANDOM_COLOR if s.reference else colors[s.label], "6,3" if s.reference else ""))
    if any(p.full is not None for p in spec.panels):
        entries.append(("full data", FULL_DATA_COLOR, "2,3"))
    out = []
    for i, (label, color, dash) in enumerate(entries[:LEGEND_ROWS]):
        yy = y0 + 14 * i
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{x0:.1f}" y1="{yy:.1f}" x2="{x0 + 18:.1f}" y2="{yy:.1f}" stroke="{color}" '
                   f'stroke-width="1.6"{dashes}/>')  # fmt: skip
        out.append(f'<text x="{x0 + 23:.1f}" y="{yy + 4:.1f}">{escape(label)}</text>')
    if len(entries) > LEGEND_ROWS:
        out.append(f'<text x="{x0 + 23:.1f}" y="{y0 + 14 * LEGEND_ROWS + 4:.1f}">(+{len(entries) - LEGEND_ROWS} more)</text>')
    return out


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _nice_top(v: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 × 10^k at or above v (and at least 1): a round axis end."""
    v = max(v, 1.0)
    base = 10 ** math.floor(math.log10(v))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= v - 1e-9)
