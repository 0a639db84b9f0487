"""Kicks: small Celery messages that wake workers when Redis holds due work, and the Celery configuration.

The work itself (events to fan out, deliveries to attempt) lives in Redis sorted sets, so a kick
carries nothing but a slot number. Each stage has ``kick_parallelism`` slots; a slot is a Redis key
with a TTL held by the task running it, so the number of kicks queued or running per stage stays
bounded however many producers, schedulers and workers publish them.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery

from dispatcher.settings import Settings
from dispatcher.store.keys import Keys
from dispatcher.store.scripts import COUNT_DUE, TAKE_SLOTS

log = logging.getLogger(__name__)

TASK_FANOUT = "dispatcher.fanout"
TASK_DELIVER = "dispatcher.deliver"
TASK_DEAD_LETTER = "dispatcher.dead_letter"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; every broker key lives under our key prefix."""
    return {
        "broker_url": settings.celery_broker_url,
        "broker_transport_options": {"global_keyprefix": settings.key_prefix, "visibility_timeout": 3600},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": "dispatch",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
    }


def make_celery(settings: Settings, main: str = "dispatcher") -> Celery:
    app = Celery(main)
    app.conf.update(celery_config(settings))
    return app


STAGES = {"fanout": TASK_FANOUT, "deliver": TASK_DELIVER}
SLOT_TTL_MS = 30_000


class Kicker:
    """Publishes kick tasks for a stage, taking free slots first."""

    def __init__(self, settings: Settings, client: redis.Redis, celery_app: Any) -> None:
        self._s = settings
        self._r = client
        self._k = Keys(settings.key_prefix)
        self._app = celery_app
        self._take = client.register_script(TAKE_SLOTS)
        self._count = client.register_script(COUNT_DUE)

    def slot_keys(self, stage: str) -> list[str]:
        return [self._k.kick(stage, i) for i in range(1, self._s.kick_parallelism + 1)]

    def publish(self, stage: str, slot: int) -> None:
        """Send one kick for ``slot`` (the caller already holds the slot)."""
        self._app.send_task(STAGES[stage], kwargs={"slot": slot})

    def kick(self, stage: str, wanted: int = 1) -> int:
        """Take up to ``wanted`` free slots of ``stage`` and publish a kick for each; returns how many."""
        wanted = min(wanted, self._s.kick_parallelism)
        if wanted <= 0:
            return 0
        taken = self._take(keys=self.slot_keys(stage), args=[SLOT_TTL_MS, wanted])
        for slot in taken:
            self.publish(stage, int(slot))
        return len(taken)

    def due(self, stage: str, cap: int) -> int:
        """How many members of the stage's queue are due now (counted up to ``cap``)."""
        key = self._k.fanout if stage == "fanout" else self._k.due
        return int(self._count(keys=[key], args=[cap]))

    def tick(self) -> dict[str, int]:
        """One scheduler pass: kick each stage that has due work, one slot per batch of it."""
        sent = {}
        for stage, batch in (("fanout", self._s.fanout_batch), ("deliver", self._s.deliver_inflight)):
            n = self.due(stage, batch * self._s.kick_parallelism)
            sent[stage] = self.kick(stage, -(-n // batch)) if n else 0
        return sent
