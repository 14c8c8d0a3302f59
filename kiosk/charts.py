"""Small server-rendered SVG charts for the admin reports: no library, nothing from the net.

Two kinds, enough for the reports page:

- :func:`column_chart`: vertical (optionally stacked) columns, one per day/week/month;
- :func:`bar_chart`: horizontal bars with the label left of each, for named things
  (subjects), whose Chinese labels read better on a line than under a narrow column.

Each chart is one ``<svg>`` element, built with ElementTree so it is always well-formed
XML (titles typed by teachers are escaped by construction), and accessible: ``role=img``
with a ``<title>`` and a ``<desc>`` that says what the chart shows in words, a
``<title>`` per bar (a tooltip, read by screen readers), and the numbers as text labels,
not only as lengths. Sizes are for a 1024x768 classroom projector: the chart is drawn in
a 900-unit-wide box shown at about that many pixels, so 18-unit text reads from the back.
Colours are presentation attributes, not CSS, because the page's Content-Security-Policy
forbids inline styles and a saved .svg file must look the same on its own; the series
colours are told apart by people with red-green colour blindness and on washed-out
projectors.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Sequence

from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
FONT = ("'Noto Sans CJK SC', 'Source Han Sans SC', 'WenQuanYi Micro Hei', "
        "'Microsoft YaHei', 'PingFang SC', sans-serif")
INK, MUTED, GRID, BACKGROUND = "#1d2733", "#5b6876", "#d5cfc3", "#ffffff"
SERIES_COLOURS = ("#1f5fbf", "#d66a00", "#6a3d9a", "#0b6e4f")
WIDTH = 900
TEXT = 18           # label size, in chart units (≈ px on the projector)
SMALL = 15


def text_width(text: str, size: float) -> float:
    """Roughly how wide ``text`` is drawn: CJK characters are square, Latin about half."""
    return sum(size if ord(c) >= 0x2E80 else size * 0.58 for c in text)


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least ``maximum`` (steps of 1, 2 or 5 × 10^n)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1) if maximum >= 1 else step  # counts: no 0.5 steps above 1
    top = math.ceil(maximum / step) * step
    return [round(i * step, 10) for i in range(int(round(top / step)) + 1)]


def number(value: float) -> str:
    """12 / 12.5 (no trailing .0 on whole numbers)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): str(v)
                                          for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = text
    return element


def _svg(chart_id: str, title: str, desc: str, height: float) -> ET.Element:
    root = ET.Element("svg", {
        "xmlns": SVG_NS, "viewBox": f"0 0 {WIDTH} {height:.0f}", "width": "100%",
        "role": "img", "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
        "id": chart_id, "class": "chart", "font-family": FONT, "font-size": str(TEXT),
        "fill": INK})
    _el(root, "title", title, id=f"{chart_id}-title")
    _el(root, "desc", desc, id=f"{chart_id}-desc")
    _el(root, "rect", x=0, y=0, width=WIDTH, height=f"{height:.0f}", fill=BACKGROUND)
    return root


def _markup(root: ET.Element) -> Markup:
    return Markup(ET.tostring(root, encoding="unicode"))


def column_chart(chart_id: str, title: str, desc: str, labels: Sequence[str],
                 series: Sequence[tuple[str, Sequence[float]]], *, empty_text: str = "",
                 height: int = 380) -> Markup:
    """Columns per label, each stacked from the series' values, with a legend.

    :param labels: one per column (a short date such as ``9/1``).
    :param series: (name, values per column); a single series draws no legend.
    """
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0))
    top_pad = 56 if len(series) > 1 else 24
    left, right, bottom = 14 + text_width(number(ticks[-1]), SMALL), 16, 44
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    root = _svg(chart_id, title, desc, height)

    def y_of(value: float) -> float:
        return top_pad + plot_h - plot_h * value / ticks[-1]

    axis = _el(root, "g", class_="axis", font_size=SMALL, fill=MUTED)
    for tick in ticks:
        _el(axis, "line", x1=f"{left:.1f}", x2=WIDTH - right, y1=f"{y_of(tick):.1f}",
            y2=f"{y_of(tick):.1f}", stroke=GRID if tick else MUTED, stroke_width=1)
        _el(axis, "text", number(tick), x=f"{left - 6:.1f}", y=f"{y_of(tick) + 5:.1f}",
            text_anchor="end")
    if len(series) > 1:
        legend = _el(root, "g", class_="legend")
        x = left
        for index, (name, _) in enumerate(series):
            _el(legend, "rect", x=f"{x:.1f}", y=8, width=18, height=18, rx=3,
                fill=SERIES_COLOURS[index % len(SERIES_COLOURS)])
            _el(legend, "text", name, x=f"{x + 24:.1f}", y=23)
            x += 24 + text_width(name, TEXT) + 28
    slot = plot_w / max(len(labels), 1)
    # Show every k-th label so that labels never overlap (the first one always).
    widest = max((text_width(label, SMALL) for label in labels), default=0) + 10
    every = max(1, math.ceil(widest / slot))
    value_size = TEXT if slot >= 34 else SMALL
    bars = _el(root, "g", class_="bars")
    for i, label in enumerate(labels):
        x = left + i * slot + slot * 0.15
        group = _el(bars, "g", class_="bar", data_label=label, data_total=number(totals[i]))
        parts = [f"{name} {number(values[i])}" for name, values in series]
        _el(group, "title", f"{label}: {number(totals[i])}"
                            + (f" ({', '.join(parts)})" if len(series) > 1 else ""))
        base = 0.0
        for index, (name, values) in enumerate(series):
            if values[i] <= 0:
                continue
            _el(group, "rect", class_="segment", data_series=name, data_value=number(values[i]),
                x=f"{x:.1f}", width=f"{slot * 0.7:.1f}", y=f"{y_of(base + values[i]):.1f}",
                height=f"{y_of(base) - y_of(base + values[i]):.1f}",
                fill=SERIES_COLOURS[index % len(SERIES_COLOURS)])
            base += values[i]
        if totals[i] > 0 and slot >= 22:
            _el(group, "text", number(totals[i]), class_="value", x=f"{x + slot * 0.35:.1f}",
                y=f"{y_of(totals[i]) - 6:.1f}", text_anchor="middle", font_size=value_size)
        if i % every == 0:
            _el(group, "text", label, class_="label", x=f"{left + (i + 0.5) * slot:.1f}",
                y=height - bottom + 26, text_anchor="middle", font_size=SMALL, fill=MUTED)
    if not any(totals) and empty_text:
        _el(root, "text", empty_text, x=f"{left + plot_w / 2:.1f}",
            y=f"{top_pad + plot_h / 2:.1f}", text_anchor="middle", fill=MUTED)
    return _markup(root)


def bar_chart(chart_id: str, title: str, desc: str, items: Sequence[tuple[str, float]], *,
              unit: str = "", empty_text: str = "", row: int = 44) -> Markup:
    """One horizontal bar per (label, value), in the order given, value written after it."""
    label_w = min(WIDTH * 0.4, max((text_width(label, TEXT) for label, _ in items),
                                   default=0) + 16)
    value_w = max((text_width(number(v) + unit, TEXT) for _, v in items), default=0) + 16
    height = 16 + row * max(len(items), 1) + 8
    root = _svg(chart_id, title, desc, height)
    maximum = max((v for _, v in items), default=0)
    plot_w = WIDTH - label_w - value_w - 8
    bars = _el(root, "g", class_="bars")
    for i, (label, value) in enumerate(items):
        y = 16 + i * row
        group = _el(bars, "g", class_="bar", data_label=label, data_value=number(value))
        _el(group, "title", f"{label}: {number(value)}{unit}")
        _el(group, "text", label, class_="label", x=f"{label_w - 10:.1f}", y=y + row / 2 + 6,
            text_anchor="end")
        length = plot_w * value / maximum if maximum else 0
        if length > 0:
            _el(group, "rect", class_="segment", x=f"{label_w:.1f}", y=y + 6,
                width=f"{max(length, 2):.1f}", height=row - 12, rx=3, fill=SERIES_COLOURS[0])
        _el(group, "text", number(value) + unit, class_="value",
            x=f"{label_w + length + 8:.1f}", y=y + row / 2 + 6)
    if not items and empty_text:
        _el(root, "text", empty_text, x=WIDTH / 2, y=16 + row / 2 + 6, text_anchor="middle",
            fill=MUTED)
    return _markup(root)
