"""``celery -A workers.app worker`` keeps working: the app lives in ``dispatcher.worker.app``."""
