"""The worker's Celery app, under the name the README and deployments use (``celery -A workers.app``)."""

from __future__ import annotations

from dispatcher.worker.app import app, settings

__all__ = ["app", "settings"]
