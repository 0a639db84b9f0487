"""Slow endpoints as the worker processes saw them (``pacing``), so each does not have to rediscover one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import redis

from dispatcher.store.keys import Keys

SHARED_FOR_MS = 30_000  # what a process shares counts this long unless shared again


class SlowEndpoint(NamedTuple):
    """What one worker process saw of a slow endpoint."""

    latency_s: float
    limit: int  # requests in flight it allowed the endpoint
    silent: bool = False  # its latest request got no answer at all (a timeout, a connection failure)


class Pacing:
    """``pacing`` (hash): endpoint id -> "<latency ms> <in-flight limit> <valid until ms> <silent 0|1>"."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def share(self, now_ms: int, slow: Mapping[str, SlowEndpoint], recovered: Sequence[str]) -> None:
        if not slow and not recovered:
            return
        pipe = self._r.pipeline(transaction=False)
        if slow:
            until = now_ms + SHARED_FOR_MS
            pipe.hset(
                self._k.pacing,
                mapping={ep: f"{int(x.latency_s * 1000)} {x.limit} {until} {int(x.silent)}" for ep, x in slow.items()},
            )
        if recovered:
            pipe.hdel(self._k.pacing, *recovered)
        pipe.execute()

    def read(self, now_ms: int) -> dict[str, SlowEndpoint]:
        """Every slow endpoint still current, by id; stale entries are dropped."""
        current: dict[str, SlowEndpoint] = {}
        stale: list[bytes | str] = []
        for key, value in self._r.hgetall(self._k.pacing).items():
            try:
                latency_ms, limit, until, *silent = (int(v) for v in value.split())
            except ValueError:
                stale.append(key)
                continue
            if until < now_ms:
                stale.append(key)
            else:
                name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
                current[name] = SlowEndpoint(latency_ms / 1000, max(1, limit), bool(silent and silent[0]))
        if stale:
            self._r.hdel(self._k.pacing, *stale)
        return current
