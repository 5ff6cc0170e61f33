"""Inline SVG line charts for the experiment's page: a median line with a min–max band over seeds.

No plotting library: a chart is a few polylines and polygons on linear axes, so the page stays
one self-contained file and `tools/setup` needs nothing more.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

#: One colour per series, colour-blind safe (Okabe–Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, HEIGHT = 360, 240
MARGIN = (46, 14, 30, 40)  # left, right, top, bottom


@dataclass
class Line:
    """y(x) as median with an optional min–max band; `dashed` for reference lines."""

    label: str
    x: Sequence[float]
    median: Sequence[float]
    low: Optional[Sequence[float]] = None
    high: Optional[Sequence[float]] = None
    colour: str = PALETTE[0]
    dashed: bool = False
    markers: bool = True


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    lines: List[Line] = field(default_factory=list)
    y_max: Optional[float] = None  # e.g. the layer's unit count or 1 for probabilities


def nice_ticks(high: float, count: int = 5) -> List[float]:
    """0 … ≥ high in 1, 2 or 5 × 10^k steps."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-12:
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def render(chart: Chart) -> str:
    """The chart as an <svg> element."""
    left, right, top, bottom = MARGIN
    plot_w, plot_h = WIDTH - left - right, HEIGHT - top - bottom
    xs = [x for line in chart.lines for x in line.x]
    ys = [y for line in chart.lines for y in list(line.median) + list(line.high or [])]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_ticks = nice_ticks(chart.y_max if chart.y_max is not None else max(ys + [1.0]))
    y_top = y_ticks[-1]

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y / y_top) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="10">',
             f'<text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="11" font-weight="bold">'
             f'{html.escape(chart.title)}</text>']
    for tick in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{py(tick) + 3:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    for tick in sorted(set(xs)) if len(set(xs)) <= 12 else nice_ticks(x_high):
        parts.append(f'<text x="{px(tick):.1f}" y="{top + plot_h + 12}" text-anchor="middle">{_fmt(tick)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{html.escape(chart.x_label)}</text>')
    parts.append(f'<text transform="translate(11 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                 f'{html.escape(chart.y_label)}</text>')
    for line in chart.lines:
        parts.extend(_line(line, px, py))
    parts.extend(_legend(chart.lines, left + 6, top + 10))
    parts.append("</svg>")
    return "\n".join(parts)


def _line(line: Line, px, py) -> List[str]:
    out = []
    if line.low is not None and line.high is not None and len(line.x) > 1:
        upper = [(px(x), py(y)) for x, y in zip(line.x, line.high)]
        lower = [(px(x), py(y)) for x, y in zip(line.x, line.low)][::-1]
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower)
        out.append(f'<polygon points="{points}" fill="{line.colour}" fill-opacity="0.18" stroke="none"/>')
    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(line.x, line.median))
    dash = ' stroke-dasharray="4 3"' if line.dashed else ""
    out.append(f'<polyline points="{path}" fill="none" stroke="{line.colour}" stroke-width="1.6"{dash}/>')
    if line.markers:
        for k, (x, y) in enumerate(zip(line.x, line.median)):
            spread = ""
            if line.low is not None and line.high is not None:
                spread = f" (seeds {_fmt(line.low[k])}–{_fmt(line.high[k])})"
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{line.colour}">'
                       f'<title>{html.escape(line.label)}: {_fmt(x)} → median {_fmt(y)}{spread}</title></circle>')
    return out


def _legend(lines: Sequence[Line], x: float, y: float) -> List[str]:
    out = []
    for k, line in enumerate(lines):
        row = y + 12 * k
        dash = ' stroke-dasharray="4 3"' if line.dashed else ""
        out.append(f'<line x1="{x}" x2="{x + 14}" y1="{row - 3}" y2="{row - 3}" stroke="{line.colour}" '
                   f'stroke-width="2"{dash}/><text x="{x + 18}" y="{row}">{html.escape(line.label)}</text>')
    return out


def colour(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def ramp(k: int, count: int) -> str:
    """A light-to-dark blue for ordered series (P = 50 … 100)."""
    t = k / max(1, count - 1)
    start, end = (158, 202, 225), (8, 48, 107)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(start, end))
    return f"#{r:02x}{g:02x}{b:02x}"


def band_points(values: Sequence[Tuple[float, float, float]]):
    """[(low, median, high)] -> (low list, median list, high list)."""
    return [v[0] for v in values], [v[1] for v in values], [v[2] for v in values]
