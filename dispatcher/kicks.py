"""Kicks: small Celery messages that wake workers when Redis holds due work, and the Celery configuration.

The broker is the store's Redis unless ``broker_url`` names another: RabbitMQ (``amqp://``) carries the
kicks then, and everything else stays in Redis. Losing a kick loses nothing: the scheduler sends another
once its slot is free (at once when the publish failed, else when the slot lapses).

The work itself (events to fan out, deliveries to attempt) lives in Redis sorted sets, so a kick
carries nothing but a slot number. Each stage has ``kick_parallelism`` slots; a slot is a Redis key
with a TTL held by the task running it, so the number of kicks queued or running per stage stays
bounded however many producers, schedulers and workers publish them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from celery import Celery

from dispatcher.brokers import is_amqp
from dispatcher.errormap import translated
from dispatcher.errors import BrokerUnavailable, ConfigError, StoreError
from dispatcher.redis_choice import redact_url
from dispatcher.settings import Settings
from dispatcher.store.connection import SENTINEL_SCHEME, celery_broker, parse_sentinel
from dispatcher.store.queue import Queue
from dispatcher.store.work import Stage

log = logging.getLogger(__name__)

TASK_FANOUT = "dispatcher.fanout"
TASK_DELIVER = "dispatcher.deliver"


KICK_CONFIRM_TIMEOUT_S = 5.0  # RabbitMQ: how long a kick's publish waits for the broker's confirmation


def _broker_names(settings: Settings) -> dict[str, Any]:
    """Where Celery's messages live on the broker, apart for each key prefix: on Redis the keys are prefixed
    (kombu's ``global_keyprefix``); on RabbitMQ, which has no key prefix, the queue and exchanges are named
    after it, so dispatchers of several prefixes can share one vhost."""
    prefix = settings.key_prefix
    if is_amqp(settings.celery_broker_url):
        return {
            "broker_transport_options": {"confirm_publish": True},  # a kick sent is a kick RabbitMQ holds
            "task_default_queue": f"{prefix}dispatch",
            "event_exchange": f"{prefix}celeryev",
            "control_exchange": f"{prefix}celery",
        }
    return {
        "broker_transport_options": {"global_keyprefix": prefix, "visibility_timeout": 3600},
        "task_default_queue": "dispatch",
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; every broker key or name is under our key prefix."""
    broker_url, transport = celery_broker(settings.celery_broker_url)  # a Sentinel URL in kombu's spelling
    config = _broker_names(settings)
    config["broker_transport_options"].update(transport)
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        **config,
        # a kick that cannot be sent is not worth waiting for (the scheduler sends another): one retry, on a
        # new connection, covers a broker that restarted since the last one; a broker away costs no time
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        # the broker lost: a running task finishes its deliveries (cancelled, it would leave requests sent but
        # not recorded, to be sent again when their leases run out); its kick comes again, which is harmless
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # kicks send no task events (Flower's tasks are the deliveries: dispatcher.worker.monitor); the
        # worker's own events stay on, for its heartbeats and the delivery loop's events
        "task_send_sent_event": False,
        "worker_send_task_events": True,
    }


def _password(url: str) -> str | None:
    """The password in ``url`` (also of a Sentinel URL, whose netloc lists several hosts), to scrub it."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return None
    return unquote(netloc.rsplit("@", 1)[0].partition(":")[2]) or None


def _shown(url: str) -> str:
    """The broker for a message: the URL with its password masked (a Sentinel URL: where its primary is)."""
    address = parse_sentinel(url) if url.lower().startswith(f"{SENTINEL_SCHEME}://") else None
    return f"at the {address.describe()}" if address is not None else redact_url(url)


def check_broker(app: Celery, settings: Settings) -> None:
    """Raise ``ConfigError`` unless the broker accepts a connection within ``broker_startup_timeout_s``: a
    process that publishes or consumes kicks fails at start, naming the setting (the URL's password masked),
    rather than retrying in silence."""
    patience_s = settings.broker_startup_timeout_s
    connection = app.connection_for_write()
    try:
        connection.ensure_connection(max_retries=None, interval_start=0.2, interval_step=0.5, interval_max=2.0,
                                     timeout=patience_s)  # fmt: skip
    except Exception as exc:
        url = settings.celery_broker_url
        why = " ".join(str(exc).split()) or type(exc).__name__
        password = _password(url)
        for spelled in (password, quote(password or "", safe="")) if password else ():
            why = why.replace(spelled, "***")
        raise ConfigError(
            f"cannot reach the broker {_shown(url)} (from {settings.broker_setting}) within {patience_s:g}s: "
            f"{why}; check that it runs and that {settings.broker_setting} points at it"
        ) from None
    finally:
        connection.release()


def make_celery(settings: Settings, main: str = "dispatcher") -> Celery:
    app = Celery(main)
    app.conf.update(celery_config(settings))
    return app


TASKS = {Stage.FANOUT: TASK_FANOUT, Stage.DELIVER: TASK_DELIVER}


class Kicker:
    """Publishes kick tasks for a stage, taking free slots first."""

    def __init__(self, settings: Settings, queue: Queue, celery_app: Celery) -> None:
        self._s = settings
        self._queue = queue
        self._app = celery_app

    @classmethod
    def for_producer(cls, settings: Settings, queue: Queue) -> Kicker:
        """A Kicker with a Celery app of its own, for processes that only publish (producers, the API)."""
        return cls(settings, queue, make_celery(settings, "dispatcher-producer"))

    def publish(self, stage: Stage, slot: int) -> None:
        """Send one kick for ``slot`` (the caller already holds the slot). When the broker cannot take it,
        the slot is freed before ``BrokerUnavailable`` is raised, so the scheduler's next pass kicks again
        rather than after the slot lapses."""
        try:
            with translated():
                self._app.send_task(TASKS[stage], kwargs={"slot": slot}, confirm_timeout=KICK_CONFIRM_TIMEOUT_S)
        except BrokerUnavailable:
            with contextlib.suppress(StoreError), translated():
                self._queue.release_slots(stage, [slot])
            raise

    def kick(self, stage: Stage, wanted: int = 1) -> int:
        """Take up to ``wanted`` free slots of ``stage`` and publish a kick for each; returns how many."""
        wanted = min(wanted, self._s.kick_parallelism)
        if wanted <= 0:
            return 0
        taken = self._queue.take_slots(stage, wanted)
        for i, slot in enumerate(taken):
            try:
                self.publish(stage, slot)
            except BrokerUnavailable:  # the broker is away: the slots not used go back too
                self._queue.release_slots(stage, taken[i + 1 :])
                raise
        return len(taken)

    def tick(self) -> dict[str, int]:
        """One scheduler pass: each stage with due work gets a slot per batch of it, counting the slots
        already held (a kick on its way, a task at work) as serving their batch."""
        sent = {}
        for stage, batch in ((Stage.FANOUT, self._s.fanout_batch), (Stage.DELIVER, self._s.deliver_inflight)):
            n = self._queue.count_due(stage, batch * self._s.kick_parallelism)
            wanted = -(-n // batch) - self._queue.held_slots(stage) if n else 0
            sent[str(stage)] = self.kick(stage, wanted) if wanted > 0 else 0
        return sent
