"""Inline SVG charts for the Leviathan view, drawn on the server: no script, no library, nothing to fetch.

Each chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>`` saying what it plots, with
its totals (each bar has its own ``<title>`` too, shown on hover). Every text is escaped. A chart is drawn at
its own size in CSS pixels (``width``/``height`` equal its ``viewBox``). The stylesheet may scale it up to fill
its column, never down (``min-width``), so its text is at least the stylesheet's 11 or 12 px; a column narrower
than the chart scrolls it instead.
"""

from __future__ import annotations

from datetime import date

from markupsafe import Markup, escape

#: Two charts side by side fit a 1280 px window (the stylesheet scales them up to 760 px, never down).
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 560, 180, 36, 22, 10
#: Text is 12 px (legend) and 11 px (axis); CHAR_W is a wide 12 px character, for laying out the legend.
CHAR_W, LEGEND_ROW = 7.2, 18
#: Horizontal bars start after the row names, which are cut to fit that column.
BAR_X, NAME_CHARS = 200, 26
#: Colours by series name (presentation attributes: the page's CSP allows no inline ``style``).
COLOURS = {
    "run": "#00ad46", "skip": "#8a94a6", "error": "#e5484d",
    "succeeded": "#00ad46", "failed": "#e5484d", "timed_out": "#f5a524", "rejected_by_guardrail": "#8e4ec6",
    "opened": "#017cee", "merged": "#8e4ec6", "closed": "#8a94a6", "lead": "#017cee",
}


def _svg_open(width: int, height: int) -> str:
    """The opening tag, without its ``aria-label`` and ``>``: one viewBox unit is one CSS pixel."""
    return f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'


def _legend(names: list[str], totals: dict[str, int]) -> tuple[str, int]:
    """The legend under the plot, in as many rows as the width needs; and its height."""
    items = []
    x, y = float(LEFT), HEIGHT + 6
    for name in names:
        label = f"{name} ({totals[name]})"
        width = 24 + CHAR_W * len(label)
        if x > LEFT and x + width > WIDTH:
            x, y = float(LEFT), y + LEGEND_ROW
        items.append(f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{COLOURS.get(name, "#888")}"/>'
                     f'<text x="{x + 14:.1f}" y="{y + 9}" class="legend">{escape(label)}</text>')
        x += width
    return "".join(items), y + 16 - HEIGHT


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
    legend, legend_h = _legend(names, totals)
    return Markup(
        f'{_svg_open(WIDTH, HEIGHT + legend_h)} aria-label="{escape(aria)}">'
        f"<title>{escape(aria)}</title>{axis}{''.join(ticks)}{''.join(shapes)}{empty}{legend}</svg>"
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
