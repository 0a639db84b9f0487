"""Kicks: small Celery messages that wake workers when Redis holds due work.

The work itself (events to fan out, deliveries to attempt) lives in Redis sorted sets, so a kick
carries nothing but a slot number. Each stage has ``kick_parallelism`` slots; a slot is a Redis key
with a TTL held by the task running it, so the number of kicks queued or running per stage stays
bounded however many producers, schedulers and workers publish them.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from .celeryconf import TASK_DELIVER, TASK_FANOUT
from .keys import Keys
from .scripts import COUNT_DUE, TAKE_SLOTS
from .settings import Settings

log = logging.getLogger(__name__)

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
