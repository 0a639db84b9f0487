"""The benchmark's figures as one SVG, written by hand (no plotting library).

Top panel: deliveries/s of each scenario as horizontal bars, under the two baselines (a) and (b), with
dashed lines at the baselines and each bar's ratio to them. Below: one panel per latency measurement
(p50 / p95 / p99 / max in ms). Figures in other units (``enqueue()`` calls/s) are notes at the bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

WIDTH = 900
LABEL_W = 270  # the label column; bars start here
BAR_W = 380  # the longest bar
ROW_H = 24
BAR_H = 15
FONT = "font-family='Helvetica, Arial, sans-serif'"
HALO = {"stroke": "white", "stroke_width": "3", "paint_order": "stroke"}  # text stays legible over lines
COLORS = {"a": "#7f8c8d", "b": "#e67e22", "scenario": "#2e86c1", "latency": "#8e44ad"}


@dataclass
class Part:
    """What one benchmark step adds to the chart."""

    references: list[tuple[str, str, float]] = field(default_factory=list)  # (tag "a"/"b", label, deliveries/s)
    throughput: list[tuple[str, float]] = field(default_factory=list)  # (label, deliveries/s)
    latency: list[tuple[str, list[tuple[str, float]]]] = field(default_factory=list)  # (title, [(p50, ms), ...])
    notes: list[str] = field(default_factory=list)


@dataclass
class ChartData:
    title: str
    subtitle: str = ""
    parts: list[Part] = field(default_factory=list)

    def merged(self) -> Part:
        out = Part()
        for p in self.parts:
            out.references += p.references
            out.throughput += p.throughput
            out.latency += p.latency
            out.notes += p.notes
        return out


def nice_ticks(top: float, most: int = 6) -> list[float]:
    """Round tick values from 0 past ``top`` (steps of 1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k" if value % 1000 == 0 else f"{value:,.0f}"
    return f"{value:g}"


def _ratio(value: float, ref: float) -> str:
    r = value / ref
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×" if r < 100 else f"{r:,.0f}×"


class _Svg:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.y = 0.0

    def text(self, x: float, y: float, s: str, size: int = 12, anchor: str = "start", **style: str) -> None:
        extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in style.items())
        self.items.append(f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}'{extra}>"
                          f"{escape(s)}</text>")  # fmt: skip

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str = "") -> None:
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.items.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{max(w, 0.5):.1f}' height='{h:.1f}' fill='{fill}'>"
                          f"{tip}</rect>")  # fmt: skip

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#bbb", dash: str = "") -> None:
        d = f" stroke-dasharray='{dash}'" if dash else ""
        self.items.append(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{stroke}'{d}/>")

    def axis(
        self, top: float, bottom: float, ticks: list[float], scale: float, unit: str, marks: tuple[float, ...] = ()
    ) -> None:
        """Grid lines and tick labels; a tick label too close to one of ``marks`` (x positions) is left out."""
        for t in ticks:
            x = LABEL_W + t * scale
            self.line(x, top, x, bottom, "#e5e5e5")
            if all(abs(x - m) > 20 for m in marks):
                self.text(x, bottom + 14, _fmt(t), 10, "middle", fill="#555")
        self.text(LABEL_W + BAR_W / 2, bottom + 28, unit, 11, "middle", fill="#333")


def render(data: ChartData) -> str:
    """The SVG document for ``data``."""
    part = data.merged()
    svg = _Svg()
    svg.text(16, 26, data.title, 17, font_weight="bold")
    svg.y = 26
    if data.subtitle:
        svg.text(16, 44, data.subtitle, 11, fill="#555")
        svg.y = 44
    refs = {tag: value for tag, _, value in part.references}

    if part.references or part.throughput:
        svg.y += 22
        x = 16.0  # legend
        legend = [(COLORS["scenario"], "dispatcher (this project)")]
        legend += [(COLORS.get(tag, "#999"), label) for tag, label, _ in part.references]
        for color, label in legend:
            svg.rect(x, svg.y - 10, 12, 12, color)
            svg.text(x + 17, svg.y, label, 11)
            x += 34 + 5.6 * len(label)
        svg.y += 26
        svg.text(16, svg.y, "Throughput: deliveries per second, end to end (longer is better)", 13, font_weight="bold")
        svg.y += 10
        rows = [(label, value, tag) for tag, label, value in part.references]
        rows += [(label, value, "scenario") for label, value in part.throughput]
        ticks = nice_ticks(max(v for _, v, _ in rows) if rows else 1)
        scale = BAR_W / ticks[-1]
        top = svg.y
        bottom = top + len(rows) * ROW_H + 2
        svg.axis(top, bottom, ticks, scale, "deliveries/s", tuple(LABEL_W + v * scale for v in refs.values() if v))
        for tag in ("a", "b"):  # the baselines as dashed lines through every row
            if refs.get(tag):
                x = LABEL_W + refs[tag] * scale
                svg.line(x, top, x, bottom, COLORS[tag], "4 3")
                svg.text(x, bottom + 14, f"({tag})", 10, "middle", fill=COLORS[tag], **HALO)
        for i, (label, value, kind) in enumerate(rows):
            y = top + i * ROW_H
            svg.text(LABEL_W - 8, y + BAR_H - 3, label, 11, "end")
            svg.rect(LABEL_W, y + 2, value * scale, BAR_H, COLORS.get(kind, "#999"), f"{label}: {value:,.0f}/s")
            figure = f"{value:,.0f}/s"
            if kind == "scenario":
                figure += "".join(f"  ·  {_ratio(value, refs[t])} ({t})" for t in ("a", "b") if refs.get(t))
            svg.text(LABEL_W + value * scale + 6, y + BAR_H - 3, figure, 11, **HALO)
        svg.y = bottom + 34

    for title, pcts in part.latency:
        svg.y += 26
        svg.text(16, svg.y, f"Latency, {title}, ms (shorter is better)", 13, font_weight="bold")
        svg.y += 10
        ticks = nice_ticks(max((v for _, v in pcts), default=1))
        scale = BAR_W / ticks[-1]
        top = svg.y
        bottom = top + len(pcts) * ROW_H + 2
        svg.axis(top, bottom, ticks, scale, "milliseconds")
        for i, (name, ms) in enumerate(pcts):
            y = top + i * ROW_H
            svg.text(LABEL_W - 8, y + BAR_H - 3, name, 11, "end")
            svg.rect(LABEL_W, y + 2, ms * scale, BAR_H, COLORS["latency"], f"{name}: {ms:g} ms")
            svg.text(LABEL_W + ms * scale + 6, y + BAR_H - 3, f"{ms:g} ms", 11, **HALO)
        svg.y = bottom + 34

    if part.notes:
        svg.y += 8
        for note in part.notes:
            svg.y += 16
            svg.text(16, svg.y, note, 11, fill="#333")
    height = svg.y + 16
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
            f"viewBox='0 0 {WIDTH} {height:.0f}' {FONT}>")  # fmt: skip
    return "\n".join([head, f"<rect width='{WIDTH}' height='{height:.0f}' fill='white'/>", *svg.items, "</svg>"]) + "\n"
