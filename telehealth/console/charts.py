"""Charts as inline SVG drawn on the server: nothing to load, nothing to run in the browser.

Every chart is an <svg role="img"> with a title; colours come from classes in console.css, so
the strict Content-Security-Policy (no inline styles) holds. Text is escaped here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from markupsafe import Markup, escape

from telehealth.console.display import zone

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 34, 34


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class in console.css: s-emergency, s-urgent, s-routine, s-none, s-median, s-p90
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _svg(title: str, body: list[str], height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, content: object, css: str = "tick", anchor: str = "start") -> str:
    return (
        f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">'
        f"{escape(str(content))}</text>"
    )


def _rect(css: str, x: float, y: float, w: float, h: float, tip: str = "", rx: int = 0) -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    return (
        f'<rect class="{escape(css)}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'rx="{rx}">{title}</rect>'
    )


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="grid" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>'


def _legend(series: Sequence[Series]) -> list[str]:
    parts, x = [], float(LEFT)
    for s in series:
        parts += [_rect(s.css, x, 8, 12, 12, rx=2), _text(x + 16, 18, s.name, "legend")]
        x += 24 + 8 * len(s.name)
    return parts


def _ticks(top_value: float) -> list[float]:
    """Round steps up to the top: 0-5 by ones, then fifths or quarters of a 1, 2 or 5 top."""
    if top_value <= 5:
        return [float(i) for i in range(int(top_value) + 1)]
    parts = 4 if str(int(top_value)).startswith("2") else 5
    return [top_value * i / parts for i in range(parts + 1)]


def _y_axis(top_value: float, unit: str, plot_h: float) -> list[str]:
    parts = []
    for value in _ticks(top_value):
        y = TOP + plot_h - plot_h * value / top_value
        parts += [
            _line(LEFT, y, WIDTH - RIGHT, y),
            _text(LEFT - 6, y + 4, _fmt(value), anchor="end"),
        ]
    if unit:
        parts.append(_text(4, TOP - 14, unit))
    return parts


def _empty(text: str) -> str:
    middle_x, middle_y = (LEFT + WIDTH - RIGHT) / 2, TOP + (HEIGHT - TOP - BOTTOM) / 2
    return _text(middle_x, middle_y, text, "empty-note", "middle")


def _x_labels(days: Sequence[date], band: float) -> list[str]:
    every = max(1, math.ceil(len(days) / 10))
    return [
        _text(LEFT + band * (i + 0.5), HEIGHT - BOTTOM + 16, day.strftime("%d %b"), anchor="middle")
        for i, day in enumerate(days)
        if i % every == 0
    ]


def stacked_bars(
    title: str, days: Sequence[date], series: Sequence[Series], unit: str = ""
) -> Markup:
    """One bar per day, each series stacked on the ones before it."""
    plot_h = HEIGHT - TOP - BOTTOM
    totals = [sum((s.values[i] or 0) for s in series) for i in range(len(days))]
    top_value = nice_ceiling(max(totals, default=0))
    band = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    body = _legend(series) + _y_axis(top_value, unit, plot_h)
    if not any(totals):
        body.append(_empty("None in this period."))
    for i, day in enumerate(days):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value:
                h = plot_h * value / top_value
                y = TOP + plot_h - plot_h * base / top_value - h
                tip = f"{day.strftime('%d %b')}: {_fmt(value)} {s.name}"
                body.append(_rect(s.css, LEFT + band * (i + 0.15), y, band * 0.7, h, tip))
            base += value
    return _svg(title, body + _x_labels(days, band))


def lines(title: str, days: Sequence[date], series: Sequence[Series], unit: str = "") -> Markup:
    """One line per series; a day without a value breaks the line."""
    plot_h = HEIGHT - TOP - BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top_value = nice_ceiling(max(values, default=0))
    band = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    body = _legend(series) + _y_axis(top_value, unit, plot_h)
    if not values:
        body.append(_empty("Nothing to show in this period."))
    for s in series:
        run: list[str] = []
        for i, value in enumerate([*s.values, None]):
            if value is None:
                if len(run) > 1:
                    body.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
                run = []
                continue
            x, y = LEFT + band * (i + 0.5), TOP + plot_h - plot_h * value / top_value
            run.append(f"{x:.1f},{y:.1f}")
            tip = f"{days[i].strftime('%d %b')}: {s.name} {_fmt(value)} {unit}"
            body.append(
                f'<circle class="{s.css}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                f"<title>{escape(tip)}</title></circle>"
            )
    return _svg(title, body + _x_labels(days, band))


def horizontal_bars(title: str, items: Sequence[tuple[str, int]], css: str = "s-flag") -> Markup:
    """Labelled bars, longest first, for counts by category."""
    row, label_w = 26, 250
    height = TOP + row * max(1, len(items)) + 10
    top_value = nice_ceiling(max((count for _, count in items), default=0))
    plot_w = WIDTH - label_w - RIGHT - 40
    body = [] if items else [_text(LEFT, TOP + 14, "Nothing in this period.")]
    for i, (label, count) in enumerate(items):
        y = TOP + row * i
        w = max(2.0, plot_w * count / top_value)
        body += [
            _text(label_w - 8, y + 16, _short(label), anchor="end"),
            _rect(css, label_w, y + 4, w, row - 8, f"{label}: {count}", rx=2),
            _text(label_w + w + 6, y + 16, count, "value"),
        ]
    return _svg(title, body, height)


def _short(label: str, limit: int = 38) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def week_strip(
    shifts: Sequence[dict[str, Any]],
    gaps: dict[str, list[tuple[datetime, datetime]]],
    now: datetime,
    tz_name: str,
    days: int = 7,
) -> Markup:
    """The coming week: one row per tier, a bar per shift, gaps in red."""
    row, label_w = 44, 70
    height = TOP + row * len(gaps) + 10
    end = now + timedelta(days=days)
    plot_w = WIDTH - label_w - RIGHT

    def x_of(moment: datetime) -> float:
        clamped = min(max(moment, now), end)
        return label_w + plot_w * (clamped - now) / (end - now)

    local = zone(tz_name)
    midnight = datetime.combine(now.astimezone(local).date(), datetime.min.time(), tzinfo=local)
    body = [_text(label_w, TOP - 20, "now")]
    for d in range(1, days + 1):
        x = x_of(midnight + timedelta(days=d))
        body += [
            _line(x, TOP - 4, x, height - 10),
            _text(x + 3, TOP - 8, (midnight + timedelta(days=d)).strftime("%a %d")),
        ]
    for i, (tier, tier_gaps) in enumerate(gaps.items()):
        y = TOP + row * i
        body.append(_text(label_w - 8, y + row / 2 + 4, tier, anchor="end"))
        for gap_start, gap_end in tier_gaps:
            x1, x2 = x_of(gap_start), x_of(gap_end)
            body.append(_rect("gap", x1, y + 6, max(2, x2 - x1), row - 12, f"No {tier} on call"))
        for s in (s for s in shifts if s["tier"] == tier):
            x1 = x_of(datetime.fromisoformat(s["starts_at"]))
            x2 = x_of(datetime.fromisoformat(s["ends_at"]))
            body.append(
                _rect(f"shift s-{tier}", x1, y + 8, max(2, x2 - x1), row - 16, s["name"], rx=3)
            )
            if x2 - x1 > 60:
                body.append(
                    _text(x1 + 4, y + row / 2 + 4, _short(s["name"], int((x2 - x1) / 7)), "on-bar")
                )
    return _svg("The coming week: shifts by tier, gaps in red", body, height)
