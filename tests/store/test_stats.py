"""collect_stats (``Store.stats``) and its rendering by ``dispatcher stats``, on counters written by the real
pipeline (the ``mixed`` fixture) and on queues filled by hand."""

from __future__ import annotations

import json

from dispatcher import Dispatcher
from dispatcher.cli.stats import format_stats


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
