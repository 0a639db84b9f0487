"""The Celery configuration shared by producers (which only publish kicks) and workers."""

from __future__ import annotations

from typing import Any

from celery import Celery

from .settings import Settings

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
