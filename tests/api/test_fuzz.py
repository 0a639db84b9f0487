"""The HTTP API fuzzed from its own OpenAPI document with schemathesis: no 5xx, no unhandled
exception, a rejected request writes nothing, and every operation of the document is exercised."""

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
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def document_operations(doc: dict[str, Any]) -> set[str]:
    """Every operation of an OpenAPI document, as "METHOD /path"."""
    return {
        f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS
    }


def _keys(client: redis.Redis, prefix: str) -> set[bytes]:
    """Every key of the test's prefix except counters and kick slots, which reads may touch."""
    return {k for k in client.scan_iter(match=f"{prefix}*") if b"stats:" not in k and b"kick:" not in k}


def test_api_fuzz(settings: Settings, raw_redis: redis.Redis, prefix: str) -> None:
    s = settings.model_copy(update={"api_keys": (KEY,), "allow_private_targets": False})
    d = Dispatcher(s)
    auth = {"Authorization": f"Bearer {KEY}"}
    app = create_app(s, d)
    documented = document_operations(app.openapi())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    seen: dict[str, int] = {}
    loaded: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation schemathesis cannot load fails the test here
        loaded.add(f"{operation.method.upper()} {operation.path}")

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
    assert len(documented) >= 15, sorted(documented)  # the document lists the API (not an empty one)
    assert loaded == documented, f"operations schemathesis did not load: {sorted(documented - loaded)}"
    missing = documented - set(seen)
    assert not missing, f"operations never exercised by a passing example: {sorted(missing)}"
    assert set(seen) == documented
    assert all(n >= 1 for n in seen.values())
