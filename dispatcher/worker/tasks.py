"""Thin Celery tasks: each takes a kick slot and runs one plain function from ``dispatcher``."""

from __future__ import annotations

from typing import Any

from dispatcher.errors import DeadLettered
from dispatcher.kicks import TASK_DEAD_LETTER, TASK_DELIVER, TASK_FANOUT
from dispatcher.worker.app import app, settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import get_runtime


@app.task(name=TASK_FANOUT, acks_late=True, ignore_result=True)
def fanout(slot: int = 0) -> dict[str, int]:
    """Turn due events into deliveries; the result summarises the batch for Flower."""
    return run_fanout(get_runtime(settings, app), slot).as_dict()


@app.task(name=TASK_DELIVER, acks_late=True, ignore_result=True)
def deliver(slot: int = 0) -> dict[str, Any]:
    """POST due deliveries; the result counts delivered / retrying / dead (and names the dead)."""
    summary = run_deliver(get_runtime(settings, app), slot)
    for letter in summary["dead_letters"]:
        dead_letter.delay(**letter)
    return summary


@app.task(name=TASK_DEAD_LETTER, ignore_result=True)
def dead_letter(delivery_id: str, endpoint_id: str, event_id: str, reason: str) -> None:
    """Fails on purpose, so every dead-lettered delivery is a red row in Flower (replay it from the API/CLI)."""
    raise DeadLettered(f"delivery {delivery_id} of event {event_id} to endpoint {endpoint_id} is dead: {reason}")
