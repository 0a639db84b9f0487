"""Celery workers of the webhook dispatcher: ``celery -A workers.app worker``."""
