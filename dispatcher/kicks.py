"""Kicks: small Celery messages that wake workers when Redis holds due work, and the Celery configuration.

The work itself (events to fan out, deliveries to attempt) lives in Redis sorted sets, so a kick
carries nothing but a slot number. Each stage has ``kick_parallelism`` slots; a slot is a Redis key
with a TTL held by the task running it, so the number of kicks queued or running per stage stays
bounded however many producers, schedulers and workers publish them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from dispatcher.errormap import translated
from dispatcher.settings import Settings
from dispatcher.store.connection import celery_broker
from dispatcher.store.queue import Queue, Stage

log = logging.getLogger(__name__)

TASK_FANOUT = "dispatcher.fanout"
TASK_DELIVER = "dispatcher.deliver"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; every broker key lives under our key prefix."""
    broker_url, transport = celery_broker(settings.celery_broker_url)  # a Sentinel URL in kombu's spelling
    return {
        "broker_url": broker_url,
        "broker_transport_options": {"global_keyprefix": settings.key_prefix, "visibility_timeout": 3600, **transport},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": "dispatch",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        # kicks send no task events (Flower's tasks are the deliveries: dispatcher.worker.monitor); the
        # worker's own events stay on, for its heartbeats and the delivery loop's events
        "task_send_sent_event": False,
        "worker_send_task_events": True,
    }


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
        """Send one kick for ``slot`` (the caller already holds the slot)."""
        with translated():
            self._app.send_task(TASKS[stage], kwargs={"slot": slot})

    def kick(self, stage: Stage, wanted: int = 1) -> int:
        """Take up to ``wanted`` free slots of ``stage`` and publish a kick for each; returns how many."""
        wanted = min(wanted, self._s.kick_parallelism)
        if wanted <= 0:
            return 0
        taken = self._queue.take_slots(stage, wanted)
        for slot in taken:
            self.publish(stage, slot)
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
