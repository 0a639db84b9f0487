"""Operational numbers read from Redis at the moment they are asked for.

``collect_stats`` gathers them into a plain dict: served as ``GET /v1/stats``, printed by
``dispatcher stats`` (``dispatcher.cli.stats``) and exposed to Prometheus on ``GET /metrics``
(``dispatcher.api.prometheus``). Nothing is kept in a process: every read takes the counters the
workers write (``stats:*`` keys), the queues, the dead-letter sets and the worker heartbeats.
"""

from __future__ import annotations

from typing import Any

import redis

from dispatcher.defaults import LATENCY_BUCKETS_MS, STATS_MINUTES_SHOWN
from dispatcher.errormap import translated
from dispatcher.store.endpoints import EndpointStore
from dispatcher.store.heartbeats import Heartbeats
from dispatcher.store.keys import Keys
from dispatcher.store.queue import Queue
from dispatcher.store.work import Stage

OUTCOMES = ("delivered", "retrying", "dead")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def collect_stats(
    client: redis.Redis, keys: Keys, endpoints: EndpointStore, queue: Queue, minutes: int = STATS_MINUTES_SHOWN
) -> dict[str, Any]:
    """Every operational number, read from Redis now; raises ``StoreUnavailable`` when it is down.

    Counters (``enqueued_total``, ``deliveries``, ``latency``) run since the Redis data was created;
    gauges (``queue``, ``pending_retries``, ``dead_letters``, ``endpoints``, ``workers``) are current.
    """
    r, k = client, keys
    with translated():
        sec, usec = r.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        listed = endpoints.list()
        this_minute = now_ms // 60000
        minute_ids = list(range(this_minute - minutes + 1, this_minute + 1))
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(k.stats_outcomes)
        pipe.hgetall(k.stats_latency)
        pipe.get(k.stats_enqueued)
        pipe.hgetall(k.stats_poison)
        for ep in listed:
            pipe.zcard(k.endpoint_dead(ep.id))
        for m in minute_ids:
            pipe.hgetall(k.stats_minute(m))
        out = pipe.execute()
        workers = Heartbeats(r, k).live()
        (fanout_due,) = queue.count_in_lanes(Stage.FANOUT, ("-inf", str(now_ms)))
        deliver_due, scheduled = queue.count_in_lanes(Stage.DELIVER, ("-inf", str(now_ms)), (f"({now_ms}", "+inf"))
    raw_outcomes, raw_latency, enqueued, raw_poison = out[:4]
    dead_counts = out[4 : 4 + len(listed)]
    minute_rows = out[4 + len(listed) :]

    # totals count every delivery ever made; the rows only live endpoints (a deleted endpoint's fields
    # are folded into "~deleted:<state>" with it, and one recorded after its deletion is not shown)
    live = {ep.id for ep in listed}
    by_endpoint: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(OUTCOMES, 0)
    for field, value in raw_outcomes.items():
        ep_id, _, outcome = _text(field).rpartition(":")
        if outcome not in totals or not ep_id:
            continue
        totals[outcome] += _int(value)
        if ep_id in live:
            row = by_endpoint.setdefault(ep_id, dict.fromkeys(OUTCOMES, 0))
            row[outcome] += _int(value)

    lat = {_text(f): _int(v) for f, v in raw_latency.items()}
    buckets = [{"le_ms": str(b), "count": lat.get(str(b), 0)} for b in LATENCY_BUCKETS_MS]
    buckets.append({"le_ms": "+Inf", "count": lat.get("+Inf", 0)})

    dead_by_endpoint = {ep.id: _int(n) for ep, n in zip(listed, dead_counts, strict=True)}
    disabled = [{"id": ep.id, "reason": ep.disabled_reason} for ep in listed if not ep.enabled]
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
        "endpoints": {"total": len(listed), "enabled": len(listed) - len(disabled), "disabled": len(disabled)},
        "disabled_endpoints": disabled,
        "workers": workers,
        "poison_records": {_text(kind): _int(n) for kind, n in sorted(raw_poison.items())},
        "minutes": [
            {"minute": m, **{o: _int(row.get(o.encode(), 0)) for o in OUTCOMES}}
            for m, row in zip(minute_ids, minute_rows, strict=True)
        ],
    }
