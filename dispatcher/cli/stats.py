"""``dispatcher stats``: the figures of ``dispatcher.store.stats.collect_stats`` as a terminal report."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from dispatcher.store.stats import OUTCOMES


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
