"""The shipped benchmark in --quick mode: it runs, and it counts correctly (its speed is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("requests")

from benchmarks import bench


def test_quick_benchmark_counts_correctly(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    results = bench.main(["--quick", "--redis-url", redis_url, "--json", str(out)])
    assert json.loads(out.read_text()) == results
    sizes = bench.Sizes.quick()
    for name in ("ceiling", "handwritten"):
        assert results[name]["per_s"] > 0
    for name, expected in (("fanout", sizes.fanout_events * sizes.fanout_endpoints), ("one_to_one", sizes.one_to_one)):
        res = results[name]
        assert res["deliveries"] == expected
        assert (res["missing"], res["duplicates"], res["bad_signatures"]) == (0, 0, 0)
        assert res["recorded"] == expected
    assert results["enqueue"]["stored"] == results["enqueue"]["expected"]
    assert results["latency"]["missing"] == 0 and results["latency"]["p99_ms"] > 0
    runs = results["isolation"]["runs"]
    assert [r["hanging"] for r in runs] == [0, sizes.isolation_endpoints // 10, sizes.isolation_endpoints // 2, 0]
    assert all(r["missing"] == 0 and r["duplicates"] == 0 for r in runs)
    assert all(r["vs_none_hanging"] > 0 for r in runs[1:-1])
    assert all(r["per_endpoint_vs_none_hanging"] >= r["vs_none_hanging"] for r in runs[1:-1])
    backlog = results["backlog"]
    assert backlog["deliveries_during"] == min(5000, sizes.one_to_one)
    assert all(v > 0 for v in backlog["rss_mb_after"].values())
