"""The HTTP API fuzzed from its own OpenAPI document with schemathesis: no 5xx, no unhandled
exception, and a rejected request writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from dispatcher import Dispatcher
from dispatcher.api.app import create_app
from dispatcher.settings import Settings

schemathesis = pytest.importorskip("schemathesis")

KEY = "fuzz-key-0123456789abcdef"
EXAMPLES_PER_OPERATION = 25


def _keys(client: redis.Redis, prefix: str) -> set[bytes]:
    """Every key of the test's prefix except counters and kick slots, which reads may touch."""
    return {k for k in client.scan_iter(match=f"{prefix}*") if b"stats:" not in k and b"kick:" not in k}


def test_api_fuzz(settings: Settings, raw_redis: redis.Redis, prefix: str) -> None:
    s = settings.model_copy(update={"api_keys": (KEY,), "allow_private_targets": False})
    d = Dispatcher(s)
    auth = {"Authorization": f"Bearer {KEY}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(s, d), headers=auth)
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            before = _keys(raw_redis, prefix)
            response = case.call(headers=auth)
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            assert response.status_code < 500, where + " " + response.text[:300]
            if response.status_code >= 400:
                assert _keys(raw_redis, prefix) == before, "a rejected request wrote to Redis: " + where
            seen[f"{case.method} {case.path}"] = seen.get(f"{case.method} {case.path}", 0) + 1

        check()
    d.close()
    assert len(seen) >= 10  # every operation of the API was exercised
