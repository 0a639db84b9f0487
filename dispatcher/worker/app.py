"""The Celery app. Settings come from the environment (``DISPATCHER_*``), read once at import."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any, ClassVar

import redis
from celery import Celery, bootsteps

from dispatcher.kicks import Kicker, make_celery
from dispatcher.settings import Settings
from dispatcher.store.keys import Keys
from dispatcher.worker.scheduler import run_scheduler

log = logging.getLogger(__name__)

settings = Settings()
app: Celery = make_celery(settings, "workers")
app.conf.update(include=["dispatcher.worker.tasks"])


HEARTBEAT_INTERVAL_S = 5.0


def _heartbeat(client: redis.Redis, name: str, concurrency: int, stop: threading.Event) -> None:
    """Say this worker is alive (health checks read it) every few seconds until stopped."""
    key = Keys(settings.key_prefix).worker(name)
    while not stop.is_set():
        value = json.dumps({"name": name, "pid": os.getpid(), "concurrency": concurrency, "at": time.time()})
        with contextlib.suppress(redis.RedisError):
            client.set(key, value, ex=int(HEARTBEAT_INTERVAL_S * 3))
        stop.wait(HEARTBEAT_INTERVAL_S)
    with contextlib.suppress(redis.RedisError):
        client.delete(key)


class EmbeddedScheduler(bootsteps.StartStopStep):
    """In the worker's main process: a heartbeat, and the (idempotent) scheduler loop when enabled."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()

    def start(self, parent: Any) -> None:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        threading.Thread(
            target=_heartbeat, args=(client, parent.hostname, parent.concurrency, self._stop), daemon=True
        ).start()
        if settings.embedded_scheduler:
            kicker = Kicker(settings, client, app)
            threading.Thread(
                target=run_scheduler, args=(kicker, settings.scheduler_interval_s, self._stop), daemon=True
            ).start()
            log.info("embedded scheduler started (every %.2fs)", settings.scheduler_interval_s)

    def stop(self, parent: Any) -> None:
        self._stop.set()


app.steps["worker"].add(EmbeddedScheduler)
