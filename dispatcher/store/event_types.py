"""The event-type catalog in Redis: one hash of type name -> JSON record, and a version counter.

What a record means (a JSON Schema, an example matching it) is checked by ``dispatcher.event_types``
before it gets here; this class only stores and reads the encoded records. Every change bumps
``event_types:ver`` in the same transaction, so a producer's compiled schemas can tell they are stale.
"""

from __future__ import annotations

from typing import cast

import redis

from dispatcher.store.keys import Keys


class EventTypeStore:
    """``event_types`` (hash: name -> record JSON) and ``event_types:ver`` (bumped on every change)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def put(self, name: str, record: bytes) -> None:
        """Save (or replace) one record and bump the version, atomically."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k.event_types, name, record)
        pipe.incr(self._k.event_types_version)
        pipe.execute()

    def get(self, name: str) -> bytes | None:
        return cast("bytes | None", self._r.hget(self._k.event_types, name))

    def delete(self, name: str) -> bool:
        """Remove one record; False (and nothing written) when there was none."""
        if not self._r.hexists(self._k.event_types, name):
            return False
        pipe = self._r.pipeline(transaction=True)
        pipe.hdel(self._k.event_types, name)
        pipe.incr(self._k.event_types_version)
        removed, _ = pipe.execute()
        return bool(removed)

    def version(self) -> bytes:
        """The version counter (``b""`` before the first change): one GET, what a producer polls."""
        return cast("bytes | None", self._r.get(self._k.event_types_version)) or b""

    def load_all(self) -> tuple[bytes, dict[bytes, bytes]]:
        """The version and every record, read together."""
        pipe = self._r.pipeline(transaction=True)
        pipe.get(self._k.event_types_version)
        pipe.hgetall(self._k.event_types)
        version, raw = pipe.execute()
        return version or b"", raw
