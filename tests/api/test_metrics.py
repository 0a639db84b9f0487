"""collect_stats / format_stats / the Prometheus collector, on counters written by the real pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import Dispatcher
from dispatcher.api.app import create_app
from dispatcher.api.prometheus import stats_metrics
from dispatcher.cli.stats import format_stats, latency_quantile
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime
from tests.conftest import Receiver


def scrape(dsp: Dispatcher) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics through the API; samples by name, then by sorted labels."""
    settings = dsp.settings.model_copy(update={"api_keys": ("k",)})
    with TestClient(create_app(settings, dsp), headers={"Authorization": "Bearer k"}) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


@pytest.fixture
def mixed(dsp: Dispatcher, runtime: Runtime, receiver_factory: Callable[..., Receiver]) -> dict[str, str]:
    """Three endpoints, one event each way: delivered, dead (no retries), retrying (retry in a minute)."""
    ok = dsp.subscribe(receiver_factory().url, ["a.*"])
    dead = dsp.subscribe(receiver_factory(reply=lambda n, r: (500, {}, b"")).url, ["a.*"], retry_schedule=[])
    retry = dsp.subscribe(receiver_factory(reply=lambda n, r: (503, {}, b"")).url, ["a.*"], retry_schedule=[60])
    dsp.enqueue("a.b", {"x": 1})
    run_fanout(runtime)
    run_deliver(runtime)
    return {"ok": ok.id, "dead": dead.id, "retry": retry.id}


def test_empty_store_has_zero_everything(dsp: Dispatcher) -> None:
    stats = dsp.stats()
    assert stats["enqueued_total"] == 0
    assert stats["deliveries"] == {"delivered": 0, "retrying": 0, "dead": 0}
    assert stats["queue_depth"] == stats["pending_retries"] == stats["dead_letters"] == 0
    assert stats["endpoints"] == {"total": 0, "enabled": 0, "disabled": 0}
    assert stats["workers"] == [] and len(stats["minutes"]) == 10
    assert stats["latency"]["count"] == 0 and stats["latency"]["buckets"][-1]["le_ms"] == "+Inf"
    json.dumps(stats)  # served as JSON by /v1/stats
    assert "workers            0 live: none" in format_stats(stats)


def test_stats_after_delivered_dead_and_retrying(dsp: Dispatcher, mixed: dict[str, str]) -> None:
    dsp.disable_endpoint(mixed["dead"], "gone for the test")
    dsp.enqueue("a.b", {"x": 2})  # stored, not fanned out yet: due now in the fan-out queue
    dsp.store.heartbeats.beat("w9@box", {"pid": 7, "concurrency": 4}, ttl_s=30)

    stats = dsp.stats()
    assert stats["enqueued_total"] == 2
    assert stats["deliveries"] == {"delivered": 1, "retrying": 1, "dead": 1}
    by_ep = stats["deliveries_by_endpoint"]
    assert by_ep[mixed["ok"]]["delivered"] == 1
    assert by_ep[mixed["dead"]]["dead"] == 1
    assert by_ep[mixed["retry"]]["retrying"] == 1
    assert stats["latency"]["count"] == 3 and sum(b["count"] for b in stats["latency"]["buckets"]) == 3
    assert stats["queue"] == {"fanout_due": 1, "deliver_due": 0} and stats["queue_depth"] == 1
    assert stats["pending_retries"] == 1
    assert stats["dead_letters"] == 1 and stats["dead_letters_by_endpoint"][mixed["dead"]] == 1
    assert stats["endpoints"] == {"total": 3, "enabled": 2, "disabled": 1}
    assert stats["disabled_endpoints"] == [{"id": mixed["dead"], "reason": "gone for the test"}]
    assert [w["name"] for w in stats["workers"]] == ["w9@box"] and stats["workers"][0]["concurrency"] == 4
    per_minute = {o: sum(m[o] for m in stats["minutes"]) for o in ("delivered", "retrying", "dead")}
    assert per_minute == {"delivered": 1, "retrying": 1, "dead": 1}

    text = format_stats(stats)
    for line in (
        "events enqueued    2",
        "delivered 1   failed attempts retried 1   dead 1",
        "queue (due now)    1",
        "pending retries    1",
        "dead letters       1",
        "endpoints          3  (1 disabled)",
        "workers            1 live: w9@box (x4)",
        "disabled: gone for the test",
    ):
        assert line in text, (line, text)


def test_queue_depth_counts_due_members_and_pending_retries_the_future_ones(dsp: Dispatcher) -> None:
    sec, _ = dsp.redis.time()
    now_ms = int(sec) * 1000
    dsp.redis.zadd(dsp.keys.due, {"d-past": now_ms - 5000, "d-now": now_ms - 1, "d-later": now_ms + 600_000})
    dsp.redis.zadd(dsp.keys.fanout, {"e-past": now_ms - 1000, "e-leased": now_ms + 60_000})
    stats = dsp.stats()
    assert stats["queue"] == {"fanout_due": 1, "deliver_due": 2}
    assert stats["queue_depth"] == 3
    assert stats["pending_retries"] == 1


def test_prometheus_metrics_from_redis_at_scrape_time(dsp: Dispatcher, mixed: dict[str, str]) -> None:
    m = scrape(dsp)
    assert m["dispatcher_redis_up"][()] == 1
    deliveries = m["dispatcher_deliveries_total"]
    assert deliveries[(("endpoint_id", mixed["ok"]), ("outcome", "delivered"))] == 1
    assert deliveries[(("endpoint_id", mixed["ok"]), ("outcome", "dead"))] == 0
    assert deliveries[(("endpoint_id", mixed["dead"]), ("outcome", "dead"))] == 1
    assert deliveries[(("endpoint_id", mixed["retry"]), ("outcome", "retrying"))] == 1
    assert m["dispatcher_events_enqueued_total"][()] == 1
    assert m["dispatcher_queue_depth"] == {(("stage", "fanout"),): 0, (("stage", "deliver"),): 0}
    assert m["dispatcher_pending_retries"][()] == 1
    assert m["dispatcher_dead_letters"][()] == 1
    assert m["dispatcher_endpoints"][()] == 3 and m["dispatcher_endpoints_disabled"][()] == 0
    assert m["dispatcher_workers_live"][()] == 0

    buckets = m["dispatcher_attempt_latency_seconds_bucket"]
    bounds = [k[0][1] for k in buckets]
    assert bounds[0] == "0.005" and bounds[-1] == "+Inf" and "30.0" in bounds
    values = list(buckets.values())
    assert values == sorted(values), "buckets are cumulative"
    assert values[-1] == m["dispatcher_attempt_latency_seconds_count"][()] == 3
    stats = dsp.stats()
    assert m["dispatcher_attempt_latency_seconds_sum"][()] == pytest.approx(stats["latency"]["sum_ms"] / 1000)

    # counters move with the next scrape: nothing is cached in the API process
    dsp.enqueue("a.b", {})
    assert scrape(dsp)["dispatcher_events_enqueued_total"][()] == 2


def test_histogram_conversion_is_cumulative_in_seconds() -> None:
    latency: dict[str, Any] = {
        "buckets": [
            {"le_ms": "5", "count": 2},
            {"le_ms": "250", "count": 3},
            {"le_ms": "30000", "count": 0},
            {"le_ms": "+Inf", "count": 1},
        ],
        "sum_ms": 40_500,
        "count": 6,
    }
    stats: dict[str, Any] = {
        "deliveries_by_endpoint": {},
        "latency": latency,
        "enqueued_total": 0,
        "queue": {"fanout_due": 0, "deliver_due": 0},
        "pending_retries": 0,
        "dead_letters": 0,
        "endpoints": {"total": 0, "disabled": 0},
        "workers": [],
    }
    (hist,) = [f for f in stats_metrics(stats) if f.name == "dispatcher_attempt_latency_seconds"]
    got = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert got == {"0.005": 2, "0.25": 5, "30.0": 5, "+Inf": 6}
    assert [s.value for s in hist.samples if s.name.endswith("_sum")] == [40.5]
    assert latency_quantile(latency, 0.5) == "≤ 250 ms"
    assert latency_quantile(latency, 0.3) == "≤ 5 ms"
    assert latency_quantile(latency, 1.0) == "> 30000 ms"
