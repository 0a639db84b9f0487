"""Slow endpoints as the worker processes saw them (``pacing``), so each does not have to rediscover one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from dispatcher.store.keys import Keys

SHARED_FOR_MS = 30_000  # what a process shares counts this long unless shared again


class Pacing:
    """``pacing`` (hash): endpoint id -> "<latency ms> <in-flight limit> <valid until ms>"."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def share(self, now_ms: int, slow: Mapping[str, tuple[float, int]], recovered: Sequence[str]) -> None:
        if not slow and not recovered:
            return
        pipe = self._r.pipeline(transaction=False)
        if slow:
            until = now_ms + SHARED_FOR_MS
            pipe.hset(
                self._k.pacing, mapping={ep: f"{int(lat * 1000)} {limit} {until}" for ep, (lat, limit) in slow.items()}
            )
        if recovered:
            pipe.hdel(self._k.pacing, *recovered)
        pipe.execute()

    def read(self, now_ms: int) -> dict[str, tuple[float, int]]:
        """Endpoint id -> (latency s, limit) of every slow endpoint still current; stale entries are dropped."""
        current: dict[str, tuple[float, int]] = {}
        stale: list[bytes | str] = []
        for key, value in self._r.hgetall(self._k.pacing).items():
            try:
                latency_ms, limit, until = (int(v) for v in value.split())
            except ValueError:
                stale.append(key)
                continue
            if until < now_ms:
                stale.append(key)
            else:
                name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
                current[name] = (latency_ms / 1000, max(1, limit))
        if stale:
            self._r.hdel(self._k.pacing, *stale)
        return current
