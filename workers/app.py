"""The Celery app. Settings come from the environment (``DISPATCHER_*``), read once at import."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import redis
from celery import Celery, bootsteps

from dispatcher.celeryconf import make_celery
from dispatcher.kick import Kicker
from dispatcher.scheduler import start_scheduler_thread
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

settings = Settings()
app: Celery = make_celery(settings, "workers")
app.conf.update(include=["workers.tasks"])


class EmbeddedScheduler(bootsteps.StartStopStep):
    """Runs the (idempotent) scheduler loop in the worker's main process when enabled."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._stop: Any = None

    def start(self, parent: Any) -> None:
        if not settings.embedded_scheduler:
            return
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        _, self._stop = start_scheduler_thread(Kicker(settings, client, app), settings.scheduler_interval_s)
        log.info("embedded scheduler started (every %.2fs)", settings.scheduler_interval_s)

    def stop(self, parent: Any) -> None:
        if self._stop is not None:
            self._stop.set()


app.steps["worker"].add(EmbeddedScheduler)
