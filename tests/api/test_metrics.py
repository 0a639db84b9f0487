"""The Prometheus collector (GET /metrics) on counters written by the real pipeline, and the conversions it and
``dispatcher stats`` make of the latency histogram."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import Dispatcher
from dispatcher.api.prometheus import stats_metrics
from dispatcher.cli.stats import latency_quantile

if TYPE_CHECKING:
    pass


def scrape(api: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics through the API; samples by name, then by sorted labels."""
    resp = api.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def test_prometheus_metrics_from_redis_at_scrape_time(api: TestClient, dsp: Dispatcher, mixed: dict[str, str]) -> None:
    m = scrape(api)
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
    assert scrape(api)["dispatcher_events_enqueued_total"][()] == 2


def test_a_deleted_endpoints_series_disappear(api: TestClient, dsp: Dispatcher, mixed: dict[str, str]) -> None:
    """Series only ever exist for live endpoints: deleting one removes its rows (and its stored counters),
    while the totals keep counting what it received."""
    before = dsp.stats()["deliveries"]
    dsp.unsubscribe(mixed["ok"])
    series = {dict(k)["endpoint_id"] for k in scrape(api)["dispatcher_deliveries_total"]}
    assert series == {mixed["dead"], mixed["retry"]}
    stats = dsp.stats()
    assert mixed["ok"] not in stats["deliveries_by_endpoint"]
    assert stats["deliveries"] == before
    fields = dsp.store.redis.hkeys(dsp.store.keys.stats_outcomes)
    assert not [f for f in fields if f.decode().startswith(mixed["ok"] + ":")]


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
        "poison_records": {"endpoint": 2},
    }
    (poison,) = [f for f in stats_metrics(stats) if f.name == "dispatcher_poison_records"]
    assert [(s.labels, s.value) for s in poison.samples] == [({"kind": "endpoint"}, 2)]
    (hist,) = [f for f in stats_metrics(stats) if f.name == "dispatcher_attempt_latency_seconds"]
    got = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert got == {"0.005": 2, "0.25": 5, "30.0": 5, "+Inf": 6}
    assert [s.value for s in hist.samples if s.name.endswith("_sum")] == [40.5]
    assert latency_quantile(latency, 0.5) == "≤ 250 ms"
    assert latency_quantile(latency, 0.3) == "≤ 5 ms"
    assert latency_quantile(latency, 1.0) == "> 30000 ms"
