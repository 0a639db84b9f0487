"""Prometheus ``/metrics``: the figures of ``dispatcher.store.stats.collect_stats``, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from dispatcher.client import Dispatcher
from dispatcher.errors import StoreError
from dispatcher.store.stats import OUTCOMES


class DispatcherCollector(Collector):
    """Prometheus collector: one ``collect_stats()`` per scrape, nothing cached."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dsp = dispatcher

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._dsp.stats(minutes=1)
        except StoreError:
            yield GaugeMetricFamily("dispatcher_redis_up", "1 when the dispatcher's Redis answered this scrape", 0)
            return
        yield GaugeMetricFamily("dispatcher_redis_up", "1 when the dispatcher's Redis answered this scrape", 1)
        yield from stats_metrics(stats)


def stats_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    """The Prometheus metric families for one ``collect_stats()`` dict."""
    deliveries = CounterMetricFamily(
        "dispatcher_deliveries",
        "Delivery outcomes by endpoint: delivered (2xx), retrying (a failed attempt that was rescheduled), "
        "dead (dead-lettered)",
        labels=["endpoint_id", "outcome"],
    )
    for ep_id, row in stats["deliveries_by_endpoint"].items():
        for outcome in OUTCOMES:
            deliveries.add_metric([ep_id, outcome], row[outcome])
    yield deliveries

    lat = stats["latency"]
    cumulative, buckets = 0, []
    for b in lat["buckets"]:
        cumulative += b["count"]
        le = "+Inf" if b["le_ms"] == "+Inf" else floatToGoString(int(b["le_ms"]) / 1000)
        buckets.append((le, float(cumulative)))
    yield HistogramMetricFamily(
        "dispatcher_attempt_latency_seconds",
        "Time from sending a webhook POST to its response (or failure), per HTTP attempt",
        buckets=buckets,
        sum_value=lat["sum_ms"] / 1000,
    )
    yield CounterMetricFamily("dispatcher_events_enqueued", "Events accepted by enqueue()", stats["enqueued_total"])
    depth = GaugeMetricFamily(
        "dispatcher_queue_depth", "Work due now and not yet claimed by a worker, per stage", labels=["stage"]
    )
    depth.add_metric(["fanout"], stats["queue"]["fanout_due"])
    depth.add_metric(["deliver"], stats["queue"]["deliver_due"])
    yield depth
    yield GaugeMetricFamily(
        "dispatcher_pending_retries",
        "Deliveries scheduled for later: retries waiting for their time, and leases of attempts in flight",
        stats["pending_retries"],
    )
    yield GaugeMetricFamily(
        "dispatcher_dead_letters", "Dead deliveries waiting for a replay, over every endpoint", stats["dead_letters"]
    )
    yield GaugeMetricFamily("dispatcher_endpoints", "Registered endpoints", stats["endpoints"]["total"])
    yield GaugeMetricFamily(
        "dispatcher_endpoints_disabled",
        "Disabled endpoints (by a user, or after a 410 Gone)",
        stats["endpoints"]["disabled"],
    )
    yield GaugeMetricFamily(
        "dispatcher_workers_live", "Workers whose heartbeat is fresh in Redis", len(stats["workers"])
    )
    poison = CounterMetricFamily(
        "dispatcher_poison_records",
        "Stored records the workers could not use and set aside (endpoint, delivery, event)",
        labels=["kind"],
    )
    for kind, n in stats["poison_records"].items():
        poison.add_metric([kind], n)
    yield poison
