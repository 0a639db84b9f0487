"""The chart renderer on fixed figures: a well-formed SVG that shows every step, scaled and labelled."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from dispatcher.bench.chart import ChartData, Part, nice_ticks, render
from dispatcher.bench.run import chart_data

NS = "{http://www.w3.org/2000/svg}"

FIGURES: dict[str, Any] = {
    "machine": {"cores": 2, "python": "3.11.7", "platform": "Linux", "event_loop": "uvloop", "redis": "7.0.15",
                "redis_embedded": False, "workers": 2},
    "ceiling": {"deliveries": 20000, "seconds": 2.0, "per_s": 10000},
    "handwritten": {"deliveries": 3000, "seconds": 4.0, "per_s": 750},
    "fanout": {"deliveries": 100000, "seconds": 13.7, "per_s": 7300, "missing": 0, "duplicates": 0,
               "bad_signatures": 0, "recorded": 100000},
    "one_to_one": {"deliveries": 100000, "seconds": 14.5, "per_s": 6900, "missing": 0, "duplicates": 0,
                   "bad_signatures": 0, "recorded": 100000},
    "enqueue": {"single_per_s": 6691, "many_per_s": 61800, "stored": 110001, "expected": 110001},
    "latency": {"events": 30000, "rate": 1000, "p50_ms": 10.0, "p95_ms": 24.0, "p99_ms": 29.0, "max_ms": 219.0,
                "missing": 0},
    "isolation": {"endpoints": 100, "timeout_s": 2.0, "none_hanging_per_s": 5000, "runs": [
        {"hanging": 0, "healthy_per_s": 5100}, {"hanging": 10, "healthy_per_s": 4700},
        {"hanging": 50, "healthy_per_s": 2600}, {"hanging": 0, "healthy_per_s": 4900}]},
    "backlog": {"pending_retries": 1000000, "rss_mb_before": {"main": 90}, "rss_mb_after": {"main": 91},
                "deliveries_during": 5000, "deliveries_during_per_s": 6000},
}  # fmt: skip


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def bar_width(root: ET.Element, title_start: str) -> float:
    for rect in root.iter(f"{NS}rect"):
        title = rect.find(f"{NS}title")
        if title is not None and (title.text or "").startswith(title_start):
            return float(rect.attrib["width"])
    raise AssertionError(f"no bar titled {title_start!r}")


@pytest.fixture
def svg() -> ET.Element:
    return ET.fromstring(render(chart_data(FIGURES)))


def test_every_step_is_on_the_chart(svg: ET.Element) -> None:
    shown = "\n".join(texts(svg))
    for label in ("(a) ceiling", "(b) hand-written", "1 fan-out: 100,000 deliveries", "2 one-to-one",
                  "3 enqueue(): 6,691 calls/s", "61,800 events/s", "Latency, enqueue → receiver",
                  "5 isolation: 10 of 100 hanging", "5 isolation: 0 of 100 hanging (after)",
                  "6 with 1,000,000 pending retries", "2 cores, Python 3.11.7, Redis 7.0.15"):  # fmt: skip
        assert label in shown, label


def test_bars_are_to_scale_and_carry_units_and_ratios(svg: ET.Element) -> None:
    fanout = bar_width(svg, "1 fan-out")
    assert fanout / bar_width(svg, "(a) ceiling") == pytest.approx(7300 / 10000, rel=0.01)
    assert fanout / bar_width(svg, "2 one-to-one") == pytest.approx(7300 / 6900, rel=0.01)
    assert bar_width(svg, "max") / bar_width(svg, "p50") == pytest.approx(219 / 10, rel=0.01)
    shown = texts(svg)
    assert "7,300/s  ·  0.73× (a)  ·  9.73× (b)" in shown
    assert {"deliveries/s", "milliseconds", "10 ms", "219 ms"} <= set(shown)


def test_without_baselines_there_are_no_ratios() -> None:
    figures = {k: v for k, v in FIGURES.items() if k not in ("ceiling", "handwritten")}
    root = ET.fromstring(render(chart_data(figures)))
    shown = texts(root)
    assert "7,300/s" in shown
    assert not any("(a)" in t or "(b)" in t for t in shown)


def test_labels_are_escaped() -> None:
    data = ChartData("a <b> & c", parts=[Part(throughput=[("x < y & z", 10.0)])])
    root = ET.fromstring(render(data))
    assert "x < y & z" in texts(root) and "a <b> & c" in texts(root)


@pytest.mark.parametrize(("top", "ticks"), [
    (9411, [0, 2000, 4000, 6000, 8000, 10000]), (219, [0, 50, 100, 150, 200, 250]), (1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
])  # fmt: skip
def test_ticks_are_round_and_cover_the_top(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == pytest.approx(ticks)


def test_the_enqueue_note_shows_the_registered_type_figure_when_measured() -> None:
    typed = {**FIGURES["enqueue"], "typed_per_s": 6300, "typed_vs_plain": 0.94}
    shown = "\n".join(texts(ET.fromstring(render(chart_data({**FIGURES, "enqueue": typed})))))
    assert "a registered type (schema checked): 6,300 calls/s (0.94x)" in shown
    assert "registered type" not in "\n".join(texts(ET.fromstring(render(chart_data(FIGURES)))))
