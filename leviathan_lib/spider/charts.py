"""Inline SVG charts for the Leviathan view, drawn on the server: no script, no library, nothing to fetch.

Each chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>`` saying what it plots, with
its totals (each bar has its own ``<title>`` too, shown on hover). Every text is escaped. A chart is drawn at
its own size in CSS pixels (``width``/``height`` equal its ``viewBox``) and never scaled down to a column, so
its text keeps the stylesheet's size (11 px and more); a narrow column scrolls it instead.
"""

from __future__ import annotations

from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 180, 36, 22, 10
#: Horizontal bars start after the row names, which are cut to fit that column at 12 px.
BAR_X, NAME_CHARS = 200, 28
#: Colours by series name (presentation attributes: the page's CSP allows no inline ``style``).
COLOURS = {
    "run": "#00ad46", "skip": "#8a94a6", "error": "#e5484d",
    "succeeded": "#00ad46", "failed": "#e5484d", "timed_out": "#f5a524", "rejected_by_guardrail": "#8e4ec6",
    "opened": "#017cee", "merged": "#8e4ec6", "closed": "#8a94a6", "lead": "#017cee",
}


def _svg_open(width: int, height: int) -> str:
    """The opening tag, without its ``aria-label`` and ``>``: one viewBox unit is one CSS pixel."""
    return f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'


def _legend(names: list[str], totals: dict[str, int]) -> str:
    items = []
    x: float = LEFT
    for name in names:
        label = f"{name} ({totals[name]})"
        items.append(f'<rect x="{x}" y="{HEIGHT + 6}" width="10" height="10" fill="{COLOURS.get(name, "#888")}"/>'
                     f'<text x="{x + 14}" y="{HEIGHT + 15}" class="legend">{escape(label)}</text>')
        x += 24 + 7.5 * len(label)
    return "".join(items)


def stacked_bars(label: str, days: list[date], series: dict[str, list[int]]) -> Markup:
    """Per-day stacked bars of ``series`` (name -> one count per day), labelled ``label``."""
    names = list(series)
    totals = {n: sum(series[n]) for n in names}
    per_day = [sum(series[n][i] for n in names) for i in range(len(days))]
    peak = max(per_day, default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(days))
    bar_w = max(1.0, step * 0.8)
    shapes = []
    for i, day in enumerate(days):
        y: float = TOP + plot_h
        for name in names:
            count = series[name][i]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            shapes.append(f'<rect x="{LEFT + i * step:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                          f'fill="{COLOURS.get(name, "#888")}"><title>{escape(f"{day}: {count} {name}")}'
                          "</title></rect>")
    ticks = [f'<text x="{LEFT - 4}" y="{TOP + 4}" class="axis" text-anchor="end">{peak}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" class="axis" text-anchor="end">0</text>']
    if days:
        ticks += [f'<text x="{LEFT}" y="{HEIGHT - 6}" class="axis">{escape(days[0].isoformat())}</text>',
                  f'<text x="{WIDTH - 4}" y="{HEIGHT - 6}" class="axis" text-anchor="end">'
                  f"{escape(days[-1].isoformat())}</text>"]
    axis = (f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}" class="grid"/>'
            f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - 4}" y2="{TOP}" class="grid"/>')
    empty = "" if any(per_day) else (f'<text x="{WIDTH / 2}" y="{TOP + plot_h / 2}" class="axis" '
                                     'text-anchor="middle">nothing recorded in this period</text>')
    summary = ", ".join(f"{n} {totals[n]}" for n in names)
    aria = f"{label}, per day from {days[0]} to {days[-1]}: {summary}" if days else label
    return Markup(
        f'{_svg_open(WIDTH, HEIGHT + 22)} aria-label="{escape(aria)}">'
        f"<title>{escape(aria)}</title>{axis}{''.join(ticks)}{''.join(shapes)}{empty}{_legend(names, totals)}</svg>"
    )


def horizontal_bars(label: str, rows: list[tuple[str, float]], unit: str) -> Markup:
    """One bar per ``(name, value)`` row (e.g. lead time per merged PR), labelled ``label``."""
    height = TOP + 22 * max(1, len(rows)) + 8
    peak = max((v for _, v in rows), default=0) or 1
    plot_w = WIDTH - BAR_X - 72  # room for the value after the longest bar
    shapes = []
    for i, (name, value) in enumerate(rows):
        y = TOP + 22 * i
        w = max(1.0, plot_w * value / peak)
        shapes.append(f'<text x="4" y="{y + 13}" class="legend">{escape(name[:NAME_CHARS])}</text>'
                      f'<rect x="{BAR_X}" y="{y}" width="{w:.1f}" height="16" fill="{COLOURS["lead"]}">'
                      f"<title>{escape(f'{name}: {value} {unit}')}</title></rect>"
                      f'<text x="{BAR_X + 4 + w:.1f}" y="{y + 13}" class="axis">{escape(f"{value} {unit}")}</text>')
    if not rows:
        shapes.append(f'<text x="{WIDTH / 2}" y="{TOP + 14}" class="axis" text-anchor="middle">'
                      "no PR merged in this period</text>")
    aria = f"{label}: " + ("; ".join(f"{n} {v} {unit}" for n, v in rows) if rows else "none")
    return Markup(f'{_svg_open(WIDTH, height)} aria-label="{escape(aria)}">'
                  f"<title>{escape(aria)}</title>{''.join(shapes)}</svg>")
