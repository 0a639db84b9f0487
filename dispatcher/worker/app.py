"""The Celery app. Settings come from the environment (``DISPATCHER_*``), read once at import."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from typing import Any, ClassVar

from celery import Celery, bootsteps, signals
from celery.exceptions import CPendingDeprecationWarning

from dispatcher.errormap import translated
from dispatcher.errors import ConfigError, StoreError
from dispatcher.kicks import Kicker, check_broker, make_celery
from dispatcher.redis_choice import redact_url
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.heartbeats import Heartbeats
from dispatcher.worker.scheduler import run_scheduler

log = logging.getLogger(__name__)

try:
    settings = Settings()
except ConfigError as exc:  # e.g. an unsupported broker: one line, not a traceback (and never the URL)
    raise SystemExit(f"dispatcher: {exc}") from None
app: Celery = make_celery(settings, "workers")
app.conf.update(include=["dispatcher.worker.tasks"])


HEARTBEAT_INTERVAL_S = 5.0


def _heartbeat(heartbeats: Heartbeats, name: str, concurrency: int, stop: threading.Event) -> None:
    """Say this worker is alive (health checks read it) every few seconds until stopped."""
    while not stop.is_set():
        info = {"pid": os.getpid(), "concurrency": concurrency, "at": time.time()}
        with contextlib.suppress(StoreError), translated():
            heartbeats.beat(name, info, ttl_s=HEARTBEAT_INTERVAL_S * 3)
        stop.wait(HEARTBEAT_INTERVAL_S)
    with contextlib.suppress(StoreError), translated():
        heartbeats.gone(name)


class EmbeddedScheduler(bootsteps.StartStopStep):
    """In the worker's main process: a heartbeat, and the (idempotent) scheduler loop when enabled."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()

    def start(self, parent: Any) -> None:
        # Celery warns at every broker connection loss that it may cancel running tasks by default one day; we
        # chose not to (``worker_cancel_long_running_tasks_on_connection_loss`` in ``kicks.celery_config``), so
        # it is noise. Here: after Celery's logging setup, which lets every such warning through.
        warnings.filterwarnings(
            "ignore",
            message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
            category=CPendingDeprecationWarning,
        )
        log.info("worker on Redis %s", settings.redis_choice().describe())
        if settings.broker_url:
            log.info("kicks through the broker %s (from DISPATCHER_BROKER_URL)", redact_url(settings.broker_url))
        store = Store(settings)
        threading.Thread(
            target=_heartbeat, args=(store.heartbeats, parent.hostname, parent.concurrency, self._stop), daemon=True
        ).start()
        if settings.embedded_scheduler:
            kicker = Kicker(settings, store.queue, app)
            threading.Thread(
                target=run_scheduler, args=(kicker, settings.scheduler_interval_s, self._stop), daemon=True
            ).start()
            log.info("embedded scheduler started (every %.2fs)", settings.scheduler_interval_s)

    def stop(self, parent: Any) -> None:
        self._stop.set()


app.steps["worker"].add(EmbeddedScheduler)


@signals.worker_init.connect
def _convert_earlier_layout(**_: Any) -> None:
    """In the main process, before the pool starts: the broker must answer (else the worker stops here with
    one clear line, having written nothing); then pending work of an earlier version, converted once."""
    try:
        check_broker(app, settings)
        store = Store(settings)
    except ConfigError as exc:
        raise SystemExit(f"dispatcher worker: {exc}") from None
    try:
        with contextlib.suppress(StoreError), translated():
            store.migrate()
    finally:
        store.close()
