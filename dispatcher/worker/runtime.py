"""Per-process worker state: the store, the endpoint cache, an event loop and HTTP engine, limits, health.

Built lazily in the process that uses it (after Celery forks its pool), never shared across forks.
"""

from __future__ import annotations

import asyncio
import os

from celery import Celery

from dispatcher.client import Dispatcher
from dispatcher.kicks import Kicker
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.work import Stage
from dispatcher.worker.engines import Engine, make_engine
from dispatcher.worker.health import EndpointHealth
from dispatcher.worker.limits import EndpointLimits
from dispatcher.worker.monitor import TaskFeed
from dispatcher.worker.poison import Poison
from dispatcher.worker.targets import EndpointCache


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (markedly faster HTTP), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runtime:
    """Everything a worker process reuses between tasks."""

    def __init__(self, settings: Settings, celery_app: Celery | None = None) -> None:
        self.settings = settings
        self.store = Store(settings)
        self.redis = self.store.redis  # for tests and tools that look at Redis directly
        self.keys = self.store.keys
        self.cache = EndpointCache(settings)
        self.limits = EndpointLimits(settings.endpoint_inflight, lease_s=settings.lease_s)
        self.poison = Poison(self.store)
        self.health = EndpointHealth(settings, self.store.failing, self.store.endpoints, self.producer)
        self._producer: Dispatcher | None = None
        self.kicker = Kicker(settings, self.store.queue, celery_app) if celery_app is not None else None
        self.loop = new_event_loop()
        self._engine: Engine | None = None
        self.celery_app = celery_app
        self._feed: TaskFeed | None = None
        self.pid = os.getpid()

    def refresh_endpoints(self, version: bytes) -> None:
        """Reload the endpoint cache if ``version`` moved; endpoints it cannot use are set aside (once)."""
        loaded = self.cache.version
        self.cache.refresh(self.store.endpoints, version)
        if self.cache.version != loaded:
            for endpoint_id, reason in self.cache.unusable.items():
                self.poison.endpoint(endpoint_id, reason)

    def producer(self) -> Dispatcher:
        """A Dispatcher for operational events this process enqueues (e.g. ``endpoint.disabled``)."""
        if self._producer is None:
            self._producer = Dispatcher(store=self.store)
        return self._producer

    def engine(self) -> Engine:
        """The process' HTTP engine (``DISPATCHER_HTTP_ENGINE``); its client is made on first use, in the loop."""
        if self._engine is None:
            self._engine = make_engine(self.settings)
        return self._engine

    def task_feed(self, hostname: str) -> TaskFeed | None:
        """Flower's feed of this process (one publisher, reused by every task); None without a Celery app,
        with task events off, or with ``flower_every`` = 0."""
        app = self.celery_app
        if app is None or not self.settings.flower_every or not app.conf.worker_send_task_events:
            return None
        if self._feed is None or self._feed.hostname != hostname:
            self._feed = TaskFeed(app, hostname, self.settings.flower_every, self.settings.flower_max_tasks_per_s)
        return self._feed

    def kick(self, stage: Stage, wanted: int = 1) -> int:
        return self.kicker.kick(stage, wanted) if self.kicker is not None else 0

    def close(self) -> None:
        if self._engine is not None:
            self.loop.run_until_complete(self._engine.close())
        self.loop.close()
        self.store.close()


_runtime: Runtime | None = None


def get_runtime(settings: Settings, celery_app: Celery | None = None) -> Runtime:
    """This process' Runtime, rebuilt after a fork."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = Runtime(settings, celery_app)
    return _runtime
