"""Per-process worker state: Redis clients, scripts, the endpoint cache, an event loop and HTTP session.

Built lazily in the process that uses it (after Celery forks its pool), never shared across forks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import redis

from dispatcher.kicks import Kicker
from dispatcher.settings import Settings
from dispatcher.ssrf import GuardedResolver
from dispatcher.store.endpoints import EndpointStore
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import (
    CLAIM_DELIVERIES,
    CLAIM_EVENTS,
    FANOUT_COMMIT,
    HANDOFF,
    HEALTH,
    RATE_PAUSE,
    RATE_RESERVE,
    RECORD,
)
from dispatcher.worker.health import EndpointHealth
from dispatcher.worker.targets import EndpointCache


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (markedly faster HTTP), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class EndpointLimits:
    """Per-endpoint concurrency that adapts, like TCP's congestion window.

    An endpoint starts with ``initial`` requests in flight, gains one per answer (any HTTP status)
    up to ``maximum``, and is halved by each timeout or connection failure. An endpoint that hangs
    soon holds one request slot instead of ``maximum``, so it cannot starve healthy endpoints.
    """

    def __init__(self, maximum: int, initial: int = 2, lease_s: float = 45.0) -> None:
        self.maximum = maximum
        self.initial = min(initial, maximum)
        self.lease_s = lease_s
        self._limits: dict[str, float] = {}
        self._latency_s: dict[str, float] = {}  # moving average of answer times

    def get(self, endpoint_id: str) -> int:
        return int(self._limits.get(endpoint_id, self.initial))

    def queue_allowance(self, endpoint_id: str) -> int:
        """How many claimed chunks may wait here for the endpoint: up to 8 rounds of its limit when it
        answers fast, one round when it is slow, so none waits anywhere near its lease."""
        latency = self._latency_s.get(endpoint_id, self.lease_s / 4)
        rounds = max(1, min(8, int(self.lease_s / 4 / max(latency, 0.001))))
        return self.get(endpoint_id) * rounds

    def spacing_ms(self, endpoint_id: str) -> float:
        """How long, on average, the endpoint takes to free one request slot (0 until it has answered)."""
        return 1000 * self._latency_s.get(endpoint_id, 0.0) / self.get(endpoint_id)

    def record(self, endpoint_id: str, outcome: Any) -> None:
        current = self._limits.get(endpoint_id, self.initial)
        seconds = outcome.latency_ms / 1000
        previous = self._latency_s.get(endpoint_id)
        self._latency_s[endpoint_id] = seconds if previous is None else previous * 0.9 + seconds * 0.1
        if outcome.status is None:
            self._limits[endpoint_id] = max(1.0, current / 2)
        elif current < self.maximum:
            self._limits[endpoint_id] = min(float(self.maximum), current + 1)


class Runtime:
    """Everything a worker process reuses between tasks."""

    def __init__(self, settings: Settings, celery_app: Any = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        self.cache = EndpointCache(settings)
        self.limits = EndpointLimits(settings.endpoint_inflight, lease_s=settings.lease_s)
        self.endpoints = EndpointStore(self.redis, self.keys, settings)
        self.claim_events = self.redis.register_script(CLAIM_EVENTS)
        self.claim_deliveries = self.redis.register_script(CLAIM_DELIVERIES)
        self.record = self.redis.register_script(RECORD)
        self.fanout_commit = self.redis.register_script(FANOUT_COMMIT)
        self.handoff = self.redis.register_script(HANDOFF)
        self.rate_reserve = self.redis.register_script(RATE_RESERVE)  # endpoints with a rate limit only
        self.rate_pause = self.redis.register_script(RATE_PAUSE)
        self.health_script = self.redis.register_script(HEALTH)
        self.health = EndpointHealth()
        self._producer: Any = None
        self.kicker = Kicker(settings, self.redis, celery_app) if celery_app is not None else None
        self.loop = new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self.pid = os.getpid()

    def producer(self) -> Any:
        """A Dispatcher for operational events this process enqueues (e.g. ``endpoint.disabled``)."""
        if self._producer is None:
            from dispatcher.client import Dispatcher

            self._producer = Dispatcher(self.settings, client=self.redis)
        return self._producer

    async def session(self) -> aiohttp.ClientSession:
        """The process' HTTP client (keep-alive pool, SSRF-guarded resolver); made inside the loop."""
        if self._session is None or self._session.closed:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=max(s.deliver_inflight * 2, 100),
                limit_per_host=0,
                ttl_dns_cache=10,
                resolver=GuardedResolver(s.allow_private_targets),
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=s.timeout_s, connect=min(s.connect_timeout_s, s.timeout_s)),
                headers={"user-agent": s.user_agent},
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    def kick(self, stage: str, wanted: int = 1) -> int:
        return self.kicker.kick(stage, wanted) if self.kicker is not None else 0

    def close(self) -> None:
        if self._session is not None and not self._session.closed:
            self.loop.run_until_complete(self._session.close())
        self.loop.close()
        self.redis.close()


_runtime: Runtime | None = None


def get_runtime(settings: Settings, celery_app: Any = None) -> Runtime:
    """This process' Runtime, rebuilt after a fork."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = Runtime(settings, celery_app)
    return _runtime
