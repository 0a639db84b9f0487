"""Thin Celery tasks: each takes a kick slot and runs one plain function from ``dispatcher``.

The tasks are wake-up kicks, each delivering many webhooks, so they send no task events of their own
(``send_events=False``): Flower's tasks are the deliveries, sent by the loop (``dispatcher.worker.monitor``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from dispatcher.errors import BrokerUnavailable
from dispatcher.kicks import TASK_DELIVER, TASK_FANOUT
from dispatcher.worker.app import app, settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import get_runtime

log = logging.getLogger(__name__)


BROKER_AWAY = "%s task: a kick was not sent (%s); the scheduler sends it once the broker answers"


@app.task(name=TASK_FANOUT, acks_late=True, ignore_result=True, send_events=False)
def fanout(slot: int = 0) -> dict[str, int]:
    """Turn due events into deliveries."""
    try:
        return run_fanout(get_runtime(settings, app), slot).as_dict()
    except BrokerUnavailable as exc:  # what it fanned out is in Redis; the rest stays due
        log.warning(BROKER_AWAY, "fanout", exc)
        return {}


@app.task(name=TASK_DELIVER, acks_late=True, ignore_result=True, send_events=False, bind=True)
def deliver(self: Task, slot: int = 0) -> dict[str, Any]:
    """POST due deliveries; each attempt is a task in Flower (``monitor``); the result counts the outcomes."""
    rt = get_runtime(settings, app)
    try:
        return run_deliver(rt, slot, feed=rt.task_feed(self.request.hostname or "dispatcher"))
    except BrokerUnavailable as exc:  # only its follow-up kick failed: every outcome is recorded
        log.warning(BROKER_AWAY, "deliver", exc)
        return {}
