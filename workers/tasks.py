"""Thin Celery tasks: each takes a kick slot and runs one plain function from ``dispatcher``."""

from __future__ import annotations

from dispatcher.celeryconf import TASK_DELIVER, TASK_FANOUT
from dispatcher.delivery import run_deliver
from dispatcher.fanout import run_fanout
from dispatcher.runtime import get_runtime

from .app import app, settings


@app.task(name=TASK_FANOUT, acks_late=True, ignore_result=True)
def fanout(slot: int = 0) -> dict[str, int]:
    """Turn due events into deliveries; the result summarises the batch for Flower."""
    return run_fanout(get_runtime(settings, app), slot).as_dict()


@app.task(name=TASK_DELIVER, acks_late=True, ignore_result=True)
def deliver(slot: int = 0) -> dict[str, int]:
    """POST due deliveries; the result counts delivered / retrying / dead."""
    return run_deliver(get_runtime(settings, app), slot)
