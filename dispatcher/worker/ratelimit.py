"""Per-endpoint rate limits, shared by every worker: a GCRA in Redis (``rl:<endpoint id>``).

An endpoint is rate-limited when it has ``rate_limit_per_s`` (any kind; a chat robot gets its
platform's documented rate by default). Its requests then go out like this:

1. A worker that claimed deliveries of the endpoint reserves one send time ("slot") per request, in
   claim order (events by time), in one script call (``scripts.RATE_RESERVE``): slots are
   ``1 / rate`` apart, whichever worker asks.
2. A request whose slot is at most ``LOCAL_WAIT_MS`` away waits for it in the worker (still leased).
3. One further off is handed back to the due set, due at its slot, and keeps the slot (``d:<delivery
   id>`` in the hash), so it is sent then without queueing again. A hand-back is not an attempt: the
   delivery's attempt count and retry schedule are untouched.

So messages beyond the rate wait in order, a long backlog waits in Redis rather than in worker memory,
and the endpoint never gets more than ``BURST + elapsed * rate`` requests. A throttled answer (the
platform says "too fast") pauses the endpoint: no new slot before its retry delay is over.
Endpoints without a rate limit never touch any of this (no Redis round trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.worker.delivery import Job
    from dispatcher.worker.runtime import Runtime

BURST = 1  # requests that may go at once after a quiet spell
LOCAL_WAIT_MS = 2000  # a slot at most this far away is waited for in the worker
HOLD_TTL_MS = 3_600_000  # how long a reserved slot outlives the endpoint's next free slot


def reserve(rt: Runtime, endpoint_id: str, interval_ms: float, chunks: Sequence[list[Job]]) -> int:
    """Set ``slot_ms`` on every job (one slot per chunk = per request); returns Redis' clock in ms."""
    args: list[Any] = [interval_ms, BURST, HOLD_TTL_MS]
    for chunk in chunks:
        args.append(len(chunk))
        args.extend(job.id for job in chunk)
    out = rt.rate_reserve(keys=[rt.keys.rate_limit(endpoint_id)], args=args)
    for chunk, slot in zip(chunks, out[1:], strict=True):
        for job in chunk:
            job.slot_ms = int(slot)
    return int(out[0])


def hold(pipe: Any, rt: Runtime, jobs: Sequence[Job]) -> None:
    """Queue (on ``pipe``) the writes that let handed-back jobs keep their slots."""
    held: dict[str, dict[str, int]] = {}
    for job in jobs:
        if job.slot_ms:
            held.setdefault(job.endpoint_id, {})[f"d:{job.id}"] = job.slot_ms
    for endpoint_id, mapping in held.items():
        pipe.hset(rt.keys.rate_limit(endpoint_id), mapping=mapping)


def pause(rt: Runtime, endpoint_id: str, seconds: float) -> None:
    """The platform throttled us: hand out no new slot for ``seconds``."""
    rt.rate_pause(keys=[rt.keys.rate_limit(endpoint_id)], args=[int(seconds * 1000), HOLD_TTL_MS])
