"""Live workers: each worker's heartbeat, kept in one sorted set so reading them never scans the keyspace."""

from __future__ import annotations

from typing import Any

import orjson
import redis

from dispatcher.store.keys import Keys


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Heartbeats:
    """``workers`` (zset: name -> last beat ms) and ``workers:info`` (hash: name -> JSON)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._k = keys

    def beat(self, name: str, info: dict[str, Any], ttl_s: float) -> None:
        """Say ``name`` is alive now; it counts as live for ``ttl_s`` unless it beats again."""
        sec, usec = self._r.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        pipe = self._r.pipeline(transaction=True)
        pipe.zadd(self._k.workers, {name: now_ms + int(ttl_s * 1000)})
        pipe.hset(self._k.workers_info, name, orjson.dumps({**info, "name": name}))
        pipe.execute()

    def gone(self, name: str) -> None:
        """A worker stopping: it is no longer live."""
        pipe = self._r.pipeline(transaction=True)
        pipe.zrem(self._k.workers, name)
        pipe.hdel(self._k.workers_info, name)
        pipe.execute()

    def live(self) -> list[dict[str, Any]]:
        """Workers whose last beat has not expired, sorted by name; expired ones are forgotten."""
        sec, usec = self._r.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        expired = self._r.zrangebyscore(self._k.workers, "-inf", now_ms)
        if expired:
            pipe = self._r.pipeline(transaction=True)
            pipe.zremrangebyscore(self._k.workers, "-inf", now_ms)
            pipe.hdel(self._k.workers_info, *expired)
            pipe.execute()
        names = sorted(_text(v) for v in self._r.zrangebyscore(self._k.workers, now_ms, "+inf"))
        if not names:
            return []
        found = []
        for name, raw in zip(names, self._r.hmget(self._k.workers_info, names), strict=True):
            try:
                info = orjson.loads(raw) if raw is not None else {}
            except orjson.JSONDecodeError:
                info = {}
            if not isinstance(info, dict):
                info = {}
            info["name"] = name
            found.append(info)
        return found
