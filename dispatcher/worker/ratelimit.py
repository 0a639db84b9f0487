"""Per-endpoint rate limits, shared by every worker: what a worker does with the send slots it reserves.

An endpoint is rate-limited when it has ``rate_limit_per_s`` (any kind; a chat robot gets its
platform's documented rate by default). Its requests then go out like this:

1. A worker that claimed deliveries of the endpoint reserves one send time ("slot") per request, in
   claim order (events by time), in one script call (``store.ratelimits``): slots are ``1 / rate``
   apart, whichever worker asks.
2. A request whose slot is at most ``LOCAL_WAIT_MS`` away waits for it in the worker (still leased).
3. One further off is handed back to the due set, due at its slot, and keeps the slot (``d:<delivery
   id>`` in the endpoint's hash), so it is sent then without queueing again. A hand-back is not an
   attempt: the delivery's attempt count and retry schedule are untouched.

So messages beyond the rate wait in order, a long backlog waits in Redis rather than in worker memory,
and the endpoint never gets more than ``BURST + elapsed * rate`` requests. A throttled answer (the
platform says "too fast") pauses the endpoint: no new slot before its retry delay is over.
Endpoints without a rate limit never touch any of this (no Redis round trip).
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.store.ratelimits import RateLimits
from dispatcher.worker.jobs import Job

LOCAL_WAIT_MS = 2000  # a slot at most this far away is waited for in the worker


def reserve(limits: RateLimits, endpoint_id: str, interval_ms: float, chunks: Sequence[list[Job]]) -> int:
    """Set ``slot_ms`` on every job (one slot per chunk = per request); returns Redis' clock in ms."""
    now_ms, slots = limits.reserve(endpoint_id, interval_ms, [[job.id for job in chunk] for chunk in chunks])
    for chunk, slot in zip(chunks, slots, strict=True):
        for job in chunk:
            job.slot_ms = slot
    return now_ms


def holds(jobs: Sequence[Job]) -> dict[str, dict[str, int]]:
    """The send slots handed-back jobs keep: endpoint id -> {delivery id: slot ms}."""
    held: dict[str, dict[str, int]] = {}
    for job in jobs:
        if job.slot_ms:
            held.setdefault(job.endpoint_id, {})[job.id] = job.slot_ms
    return held
