"""The Celery worker: its app and thin tasks, the fan-out, the delivery engine, the scheduler.

Run it with ``celery -A dispatcher.worker.app worker`` (or ``celery -A workers.app worker``, the same app).
"""
