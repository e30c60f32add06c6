"""Inline SVG charts as plain strings: no JavaScript library, no external URL, nothing to download.

Every mark (bar, point) carries ``data-mark`` and a ``<title>`` tooltip, so a browser test can count what
was actually drawn and people can hover for exact values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 44
PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2")
_MAX_X_LABELS = 8


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[tuple[str, float]],
    *,
    value_label: Callable[[float], str] = lambda value: f"{value:g}",
    color: str = PALETTE[0],
    integer: bool = False,
    empty_message: str = "no data yet",
) -> str:
    """One bar per (label, value); values must be >= 0. ``integer``: counts, so whole-number ticks."""
    if not bars:
        return _empty(chart_id, title, empty_message)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _axis_top(max(value for _, value in bars), integer)
    slot = plot_width / len(bars)
    step = max(1, -(-len(bars) // _MAX_X_LABELS))
    parts = _y_axis(top, value_label)
    for index, (label, value) in enumerate(bars):
        height = max(1.0, value / top * plot_height)  # a zero still shows as a hairline
        x = LEFT + index * slot + slot * 0.1
        parts.append(
            f'<rect data-mark x="{x:.1f}" y="{TOP + plot_height - height:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{height:.1f}" fill="{color}"><title>{escape(label)}: {escape(value_label(value))}'
            "</title></rect>"
        )
        if index % step == 0:
            parts.append(_x_label(LEFT + (index + 0.5) * slot, label))
    return _figure(chart_id, title, len(bars), parts)


def line_chart(
    chart_id: str,
    title: str,
    series: dict[str, Sequence[tuple[datetime, float]]],
    *,
    value_label: Callable[[float], str] = lambda value: f"{value:g}",
    empty_message: str = "no data yet",
) -> str:
    """One line with a point per (time, value) for each named series, on a shared time axis."""
    points = [point for values in series.values() for point in values]
    if not points:
        return _empty(chart_id, title, empty_message)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    start = min(moment for moment, _ in points).timestamp()
    span = max(moment for moment, _ in points).timestamp() - start
    top = _axis_top(max(value for _, value in points), integer=False)

    def position(moment: datetime, value: float) -> tuple[float, float]:
        fraction = (moment.timestamp() - start) / span if span else 0.5
        return LEFT + fraction * plot_width, TOP + plot_height - value / top * plot_height

    parts = _y_axis(top, value_label)
    for index, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[index % len(PALETTE)]
        xy = [position(moment, value) for moment, value in sorted(values)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy))
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), (moment, value) in zip(xy, sorted(values), strict=True):
            parts.append(
                f'<circle data-mark cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{escape(name)} '
                f"{moment:%Y-%m-%d %H:%M:%S} UTC: {escape(value_label(value))}</title></circle>"
            )
        parts.append(
            f'<text x="{LEFT + 8 + index * 150}" y="{HEIGHT - 6}" fill="{color}" font-size="12">'
            f"&#9679; {escape(name)}</text>"
        )
    first, last = min(points)[0], max(points)[0]
    parts.append(_x_label(LEFT, f"{first:%Y-%m-%d %H:%M}", anchor="start", y=HEIGHT - BOTTOM + 16))
    if span:
        parts.append(_x_label(WIDTH - RIGHT, f"{last:%Y-%m-%d %H:%M}", anchor="end", y=HEIGHT - BOTTOM + 16))
    return _figure(chart_id, title, len(points), parts)


def _axis_top(largest: float, integer: bool) -> float:
    """The axis maximum: four equal ticks of a round step (1, 2, 2.5 or 5 times a power of ten)."""
    if largest <= 0:
        return 4.0 if integer else 1.0
    magnitude = 10 ** math.floor(math.log10(largest / 4))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude * 4 >= largest)
    return max(step, 1.0) * 4 if integer else step * 4


def _y_axis(top: float, value_label: Callable[[float], str]) -> list[str]:
    plot_height = HEIGHT - TOP - BOTTOM
    parts = []
    for tick in range(5):
        value = top * tick / 4
        y = TOP + plot_height - plot_height * tick / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#4b5563">'
            f"{escape(value_label(value))}</text>"
        )
    return parts


def _x_label(x: float, label: str, anchor: str = "middle", y: float | None = None) -> str:
    y = HEIGHT - BOTTOM + 16 if y is None else y
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="11" fill="#4b5563">'
        f"{escape(label)}</text>"
    )


def _figure(chart_id: str, title: str, marks: int, parts: list[str]) -> str:
    return (
        f'<figure class="chart" data-chart="{escape(chart_id)}" data-marks="{marks}">'
        f"<figcaption>{escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">{"".join(parts)}</svg></figure>'
    )


def _empty(chart_id: str, title: str, message: str) -> str:
    return (
        f'<figure class="chart" data-chart="{escape(chart_id)}" data-marks="0">'
        f'<figcaption>{escape(title)}</figcaption><p class="empty">{escape(message)}</p></figure>'
    )
