"""Fixtures of the store's tests: a ``Store`` on the test's Redis and prefix, Redis' clock, events to store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from dispatcher.events import NewEvent, build_event
from dispatcher.settings import Settings
from dispatcher.store import Store


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings)
    yield s
    s.close()


@pytest.fixture
def redis_ms(raw_redis: redis.Redis) -> Callable[[], int]:
    """``redis_ms()``: Redis' clock in ms (the scripts' ``now``)."""

    def now() -> int:
        sec, usec = raw_redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    return now


@pytest.fixture
def new_event(settings: Settings) -> Callable[..., NewEvent]:
    """``new_event(type="a.b", data=None, event_id=..., idempotency_key=..., endpoint_ids=...)``: an event
    validated and encoded as ``enqueue()`` does, ready for ``Queue.enqueue``."""

    def make(event_type: str = "a.b", data: Any = None, **options: Any) -> NewEvent:
        return build_event(event_type, data, max_bytes=settings.max_payload_bytes, **options)

    return make
