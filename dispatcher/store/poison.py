"""Counting stored records the workers could not use (``stats:poison``, shown in ``/metrics``)."""

from __future__ import annotations

import redis

from dispatcher.store.keys import Keys


class PoisonCounts:
    """One counter per kind of record: endpoint, delivery, event, stream."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def add(self, kind: str, n: int = 1) -> None:
        self._r.hincrby(self._k.stats_poison, kind, n)

    def all(self) -> dict[str, int]:
        raw = self._r.hgetall(self._k.stats_poison)
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
