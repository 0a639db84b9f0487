"""Operational numbers read from Redis at the moment they are asked for.

``collect_stats`` gathers them into a plain dict (served as ``GET /v1/stats``, printed by
``format_stats`` for a terminal), and ``DispatcherCollector`` exposes the same dict to Prometheus on
``GET /metrics``. Nothing is kept in the API process: every scrape reads the counters the workers
write (``stats:*`` keys), the queues, the dead-letter sets and the worker heartbeats.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .delivery import LATENCY_BUCKETS_MS
from .errors import StoreUnavailable
from .keys import Keys

if TYPE_CHECKING:
    from .client import Dispatcher

OUTCOMES = ("delivered", "retrying", "dead")
MINUTES = 10  # per-minute counters returned (stats_minute keys live 2 h)
_GLOB_SPECIAL = "*?[]\\"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def live_workers(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Workers whose heartbeat key has not expired, sorted by name (name, pid, concurrency, at)."""
    found = sorted(_text(k) for k in client.scan_iter(match=_glob_escape(keys.worker("")) + "*", count=1000))
    if not found:
        return []
    workers = []
    start = len(keys.worker(""))
    for key, raw in zip(found, client.mget(found), strict=True):
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            info = orjson.loads(raw)
        except orjson.JSONDecodeError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        info["name"] = str(info.get("name") or key[start:])
        workers.append(info)
    return workers


def collect_stats(dispatcher: Dispatcher, minutes: int = MINUTES) -> dict[str, Any]:
    """Every operational number, read from Redis now; raises ``StoreUnavailable`` when it is down.

    Counters (``enqueued_total``, ``deliveries``, ``latency``) run since the Redis data was created;
    gauges (``queue``, ``pending_retries``, ``dead_letters``, ``endpoints``, ``workers``) are current.
    """
    r, k = dispatcher.redis, dispatcher.keys
    try:
        sec, usec = r.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        endpoints = dispatcher.endpoints.list()
        this_minute = now_ms // 60000
        minute_ids = list(range(this_minute - minutes + 1, this_minute + 1))
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(k.stats_outcomes)
        pipe.hgetall(k.stats_latency)
        pipe.get(k.stats_enqueued)
        pipe.zcount(k.fanout, "-inf", now_ms)
        pipe.zcount(k.due, "-inf", now_ms)
        pipe.zcount(k.due, f"({now_ms}", "+inf")
        for ep in endpoints:
            pipe.zcard(k.endpoint_dead(ep.id))
        for m in minute_ids:
            pipe.hgetall(k.stats_minute(m))
        out = pipe.execute()
        workers = live_workers(r, k)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc
    raw_outcomes, raw_latency, enqueued, fanout_due, deliver_due, scheduled = out[:6]
    dead_counts = out[6 : 6 + len(endpoints)]
    minute_rows = out[6 + len(endpoints) :]

    by_endpoint: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(OUTCOMES, 0)
    for field, value in raw_outcomes.items():
        ep_id, _, outcome = _text(field).rpartition(":")
        if outcome not in totals or not ep_id:
            continue
        row = by_endpoint.setdefault(ep_id, dict.fromkeys(OUTCOMES, 0))
        row[outcome] += _int(value)
        totals[outcome] += _int(value)

    lat = {_text(f): _int(v) for f, v in raw_latency.items()}
    buckets = [{"le_ms": str(b), "count": lat.get(str(b), 0)} for b in LATENCY_BUCKETS_MS]
    buckets.append({"le_ms": "+Inf", "count": lat.get("+Inf", 0)})

    dead_by_endpoint = {ep.id: _int(n) for ep, n in zip(endpoints, dead_counts, strict=True)}
    disabled = [{"id": ep.id, "reason": ep.disabled_reason} for ep in endpoints if not ep.enabled]
    return {
        "time": now_ms / 1000,
        "enqueued_total": _int(enqueued),
        "deliveries": totals,
        "deliveries_by_endpoint": dict(sorted(by_endpoint.items())),
        "latency": {"buckets": buckets, "sum_ms": lat.get("sum_ms", 0), "count": lat.get("count", 0)},
        "queue": {"fanout_due": _int(fanout_due), "deliver_due": _int(deliver_due)},
        "queue_depth": _int(fanout_due) + _int(deliver_due),
        "pending_retries": _int(scheduled),
        "dead_letters": sum(dead_by_endpoint.values()),
        "dead_letters_by_endpoint": dead_by_endpoint,
        "endpoints": {"total": len(endpoints), "enabled": len(endpoints) - len(disabled), "disabled": len(disabled)},
        "disabled_endpoints": disabled,
        "workers": workers,
        "minutes": [
            {"minute": m, **{o: _int(row.get(o.encode(), 0)) for o in OUTCOMES}}
            for m, row in zip(minute_ids, minute_rows, strict=True)
        ],
    }


# -- terminal -------------------------------------------------------------------------------------
def latency_quantile(latency: dict[str, Any], q: float) -> str:
    """The bucket bound (``"≤ 25 ms"``) under which a fraction ``q`` of attempts fell; ``"-"`` if none."""
    total = sum(b["count"] for b in latency["buckets"])
    if not total:
        return "-"
    need = math.ceil(q * total)
    seen = 0
    for b in latency["buckets"]:
        seen += b["count"]
        if seen >= need:
            return "> 30000 ms" if b["le_ms"] == "+Inf" else f"≤ {b['le_ms']} ms"
    return "-"


def _clock(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%H:%M")


def format_stats(stats: dict[str, Any]) -> str:
    """A terminal report of ``collect_stats()``'s dict."""
    d, q, lat = stats["deliveries"], stats["queue"], stats["latency"]
    when = datetime.fromtimestamp(stats["time"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    mean = f"{lat['sum_ms'] / lat['count']:.1f} ms" if lat["count"] else "-"
    eps = stats["endpoints"]
    workers = stats["workers"]
    worker_text = (
        ", ".join(f"{w['name']} (x{w.get('concurrency', '?')})" for w in workers)
        if workers
        else "none (deliveries wait until a worker runs)"
    )
    lines = [
        f"dispatcher stats at {when}",
        f"  events enqueued    {stats['enqueued_total']}",
        f"  deliveries         delivered {d['delivered']}   failed attempts retried {d['retrying']}   dead {d['dead']}",
        f"  attempt latency    n={lat['count']}  mean {mean}  p50 {latency_quantile(lat, 0.5)}"
        f"  p95 {latency_quantile(lat, 0.95)}  p99 {latency_quantile(lat, 0.99)}",
        f"  queue (due now)    {stats['queue_depth']}  (fan-out {q['fanout_due']}, delivery {q['deliver_due']})",
        f"  pending retries    {stats['pending_retries']}  (scheduled later, or in flight)",
        f"  dead letters       {stats['dead_letters']}",
        f"  endpoints          {eps['total']}  ({eps['disabled']} disabled)",
        f"  workers            {len(workers)} live: {worker_text}",
        "",
        "  per minute (UTC)   delivered  retried  dead",
    ]
    for row in stats["minutes"]:
        lines.append(
            f"    {_clock(row['minute'] * 60):<16} {row['delivered']:>9}  {row['retrying']:>7}  {row['dead']:>4}"
        )
    ep_ids = sorted(set(stats["deliveries_by_endpoint"]) | set(stats["dead_letters_by_endpoint"]))
    if ep_ids:
        width = max(len(e) for e in ep_ids)
        lines += ["", f"  {'endpoint':<{width}}  delivered  retried  dead  dead letters"]
        reasons = {e["id"]: e["reason"] for e in stats["disabled_endpoints"]}
        for ep_id in ep_ids:
            row = stats["deliveries_by_endpoint"].get(ep_id, dict.fromkeys(OUTCOMES, 0))
            note = f"  disabled: {reasons[ep_id] or 'yes'}" if ep_id in reasons else ""
            dead_letters = stats["dead_letters_by_endpoint"].get(ep_id, 0)
            lines.append(
                f"  {ep_id:<{width}}  {row['delivered']:>9}  {row['retrying']:>7}  {row['dead']:>4}"
                f"  {dead_letters:>12}{note}"
            )
    return "\n".join(lines)


# -- Prometheus -----------------------------------------------------------------------------------
class DispatcherCollector(Collector):
    """Prometheus collector: one ``collect_stats()`` per scrape, nothing cached."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dsp = dispatcher

    def collect(self) -> Iterator[Metric]:
        try:
            stats = collect_stats(self._dsp, minutes=1)
        except (StoreUnavailable, redis.RedisError):
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
