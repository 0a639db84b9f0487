"""Baseline (b): the hand-written way — one Celery task per delivery doing ``requests.post``.

``celery -A dispatcher.bench.handwritten worker`` with BENCH_BROKER_URL / BENCH_QUEUE / BENCH_PREFIX set by
the benchmark. It needs ``requests`` (the ``bench`` extra); the benchmark checks before starting it.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery
from celery.signals import worker_process_init

app = Celery("handwritten", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "handwritten"),
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"global_keyprefix": os.environ.get("BENCH_PREFIX", "handwritten:")},
)
_session: dict[str, Any] = {}


@worker_process_init.connect
def _fresh_session(**_: Any) -> None:
    _session["s"] = requests.Session()  # one per child, never shared across fork


@app.task(name="handwritten.post")
def post(url: str, body: str, headers: dict[str, str]) -> int:
    session = _session.get("s") or _session.setdefault("s", requests.Session())
    return session.post(url, data=body.encode(), headers=headers, timeout=15).status_code
