"""``dispatcher bench --quick`` from the installed entry point: it runs, it counts correctly, it writes the
JSON and the chart, and off a terminal its progress is plain lines (its speed is not asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dispatcher.bench.harness import Sizes

pytest.importorskip("requests")


@pytest.mark.timeout(900)  # seconds on an idle machine, minutes on a busy one
def test_quick_benchmark_from_the_entry_point(redis_url: str, tmp_path: Path) -> None:
    exe = shutil.which("dispatcher", path=str(Path(sys.executable).parent))
    assert exe is not None, "the dispatcher entry point is not installed next to this Python"
    out, chart = tmp_path / "figures.json", tmp_path / "chart.svg"
    proc = subprocess.run(
        [exe, "bench", "--quick", "--redis-url", redis_url, "--json", str(out), "--chart", str(chart)],
        cwd=tmp_path, capture_output=True, text=True, timeout=840, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    sizes = Sizes.quick()

    for name in ("ceiling", "handwritten"):
        assert results[name]["per_s"] > 0
    ceiling = results["ceiling"]  # (a) measures each candidate client; the fastest is the ceiling
    assert set(ceiling["clients"]) == {"aiohttp", "reqwest"}
    assert ceiling["per_s"] == max(c["per_s"] for c in ceiling["clients"].values())
    assert ceiling["clients"][ceiling["fastest"]]["vs_fastest"] == 1.0
    assert all(c["cpu_us_per_post"] > 0 for c in ceiling["clients"].values())
    for name, expected in (("fanout", sizes.fanout_events * sizes.fanout_endpoints), ("one_to_one", sizes.one_to_one)):
        res = results[name]
        assert res["deliveries"] == expected
        assert (res["missing"], res["duplicates"], res["bad_signatures"]) == (0, 0, 0)
        assert res["recorded"] == expected
        assert res["vs_ceiling"] > 0 and res["vs_handwritten"] > 0
        # what Redis spent on it: some CPU, at least the enqueue, claim and record calls, evalsha among the costliest
        assert res["redis_cpu_us"] > 0 and res["redis_commands"] >= 3 and "evalsha" in res["redis_top_us"]
        assert res["worker_cpu_us_per_delivery"] > 0
    assert results["enqueue"]["stored"] == results["enqueue"]["expected"]
    fairness = results["tenants"]  # the quiet tenant's events all arrive, alone and beside the backlog
    assert fairness["alone"]["missing"] == fairness["with_backlog"]["missing"] == 0
    assert fairness["p99_vs_alone"] > 0
    assert results["latency"]["missing"] == 0 and results["latency"]["p99_ms"] > 0
    runs = results["isolation"]["runs"]
    assert [r["hanging"] for r in runs] == [0, sizes.isolation_endpoints // 10, sizes.isolation_endpoints // 2, 0]
    assert all(r["missing"] == 0 and r["duplicates"] == 0 for r in runs)
    assert all(r["per_endpoint_vs_none_hanging"] >= r["vs_none_hanging"] > 0 for r in runs[1:-1])
    backlog = results["backlog"]
    assert backlog["deliveries_during"] == min(5000, sizes.one_to_one)
    assert all(v > 0 for v in backlog["rss_mb_after"].values())
    flower = results["flower"]  # 7: the same shape without Flower, attached (defaults), attached uncapped
    assert all(flower[v]["missing"] == 0 and flower[v]["duplicates"] == 0 for v in ("without", "with", "uncapped"))
    assert flower["uncapped"]["flower_tasks_succeeded"] == flower["uncapped"]["deliveries"]  # every attempt a task
    assert 0 < flower["with"]["flower_tasks_succeeded"] <= flower["with"]["deliveries"]
    assert all(flower[v]["worker_cpu_us_per_delivery"] > 0 for v in ("without", "with", "uncapped"))

    # stdout: one line per step; stderr: plain progress lines, no carriage returns
    assert [row.split(" ")[0] for row in proc.stdout.splitlines()] == [
        "machine:", "(a)", "(b)", "1", "2", "3", "4", "5", "6", "7", "8", "chart:",
    ]  # fmt: skip
    assert "\r" not in proc.stderr
    assert f"  fanout: {sizes.fanout_events * sizes.fanout_endpoints:,}/" in proc.stderr
    assert any(row.startswith("  one_to_one: ") and row.endswith(" done") for row in proc.stderr.splitlines())

    root = ET.fromstring(chart.read_text())
    shown = "\n".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for label in ("(a) ceiling", "(b) hand-written", "1 fan-out", "2 one-to-one", "3 enqueue()", "Latency",
                  "5 isolation", "6 with", "8 a quiet tenant"):  # fmt: skip
        assert label in shown, label
