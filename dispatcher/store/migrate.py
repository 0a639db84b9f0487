"""Bringing data written by an earlier version to the current layout, once per Redis and key prefix.

Layout 2 (this version) keeps what a claim needs next to the queues: a fan-out entry is
``"<event id> <type>[ <endpoint ids>]"``, and a pending delivery has a job in ``jobs`` and its event's
body in ``bodies`` (counted in ``refs``). Layout 1 queued bare ids and read the rest from the event and
delivery hashes. The first worker of this version to start converts what is pending (``migrate``);
stop workers of the earlier version first.
"""

from __future__ import annotations

import logging
import time

import redis

from dispatcher.store.keys import Keys

log = logging.getLogger(__name__)

LAYOUT = 2
LOCK_TTL_S = 600


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


def migrate(client: redis.Redis, keys: Keys) -> int:
    """Convert pending work of layout 1, once (a concurrent caller waits for the first); returns entries converted."""
    done = str(LAYOUT).encode()
    if client.get(keys.layout) == done:
        return 0
    if not client.set(keys.layout_lock, "1", nx=True, ex=LOCK_TTL_S):
        deadline = time.monotonic() + LOCK_TTL_S  # another process is converting: wait for it
        while client.get(keys.layout) != done and client.exists(keys.layout_lock) and time.monotonic() < deadline:
            time.sleep(0.2)
        return 0
    converted = 0
    try:
        for member, score in client.zscan_iter(keys.fanout):
            if b" " in member:
                continue
            event_id = member.decode()
            etype, only = client.hmget(keys.event(event_id), "type", "only")
            pipe = client.pipeline(transaction=True)
            pipe.zrem(keys.fanout, member)
            if etype:  # an expired event has nothing left to fan out
                entry = f"{event_id} {_text(etype)}" + (f" {_text(only)}" if only else "")
                pipe.zadd(keys.fanout, {entry: score})
            pipe.execute()
            converted += 1
        for member, _score in client.zscan_iter(keys.due):
            if client.hexists(keys.jobs, member):
                continue
            delivery_id = member.decode()
            event_id, endpoint_id, n, r = (
                _text(v) for v in client.hmget(keys.delivery(delivery_id), "evt", "ep", "n", "r")
            )
            if not event_id:
                continue  # no record: the claim drops it and says so
            body = client.hget(keys.event(event_id), "body")
            pipe = client.pipeline(transaction=True)
            pipe.hset(keys.jobs, delivery_id, f"{event_id} {endpoint_id} {n or 0} {r or 0}")
            if body is not None:
                pipe.hsetnx(keys.bodies, event_id, body)
            pipe.hincrby(keys.refs, event_id, 1)
            pipe.execute()
            converted += 1
        client.set(keys.layout, LAYOUT)
    finally:
        client.delete(keys.layout_lock)
    if converted:
        log.info("converted %d pending entries to layout %d", converted, LAYOUT)
    return converted
