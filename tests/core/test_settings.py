"""Settings from the environment: defaults, the retry schedule and cross-field checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dispatcher.settings import DEFAULT_RETRY_SCHEDULE_S, Settings, parse_schedule


def _kw(**values: Any) -> dict[str, Any]:
    """Keyword arguments of any type: the validators, not mypy, are under test."""
    return values


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without DISPATCHER_* variables (CI sets DISPATCHER_REDIS_URL)."""
    for name in list(os.environ):
        if name.upper().startswith("DISPATCHER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.redis_url is None  # no default Redis: see tests/cli/test_devstack.py for what is used then
    assert s.timeout_s == 15
    assert s.max_payload_bytes == 262144
    assert s.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert s.retry_schedule == DEFAULT_RETRY_SCHEDULE_S
    assert s.key_prefix == "whd:"
    assert s.allow_private_targets is False
    assert s.lease_s == s.timeout_s + s.lease_margin_s


def test_schedule_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_RETRY_SCHEDULE", "1,2.5,3")
    s = Settings()
    assert s.retry_schedule == (1.0, 2.5, 3.0)
    assert all(isinstance(v, float) for v in s.retry_schedule)


def test_schedule_from_env_tolerates_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_RETRY_SCHEDULE", " 1 , 2 ,3, ")
    assert Settings().retry_schedule == (1.0, 2.0, 3.0)


def test_other_values_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("DISPATCHER_BROKER_URL", "redis://broker:6379/3")
    monkeypatch.setenv("DISPATCHER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("DISPATCHER_ALLOW_PRIVATE_TARGETS", "true")
    s = Settings()
    assert s.redis_url == s.store_url == "redis://example:6380/2"
    assert s.celery_broker_url == "redis://broker:6379/3"
    assert s.timeout_s == 2.5
    assert s.allow_private_targets is True


@pytest.mark.parametrize("bad", ["1,two,3", "-1,5", "nan", "1,inf", "abc"])
def test_bad_schedule_from_env(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("DISPATCHER_RETRY_SCHEDULE", bad)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("bad", [[1, "x"], [-5], [None], [float("nan")], 5, {"a": 1}])
def test_bad_schedule_in_code(bad: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**_kw(retry_schedule=bad))


def test_schedule_as_sequence() -> None:
    assert Settings(**_kw(retry_schedule=[1, 2])).retry_schedule == (1.0, 2.0)


@pytest.mark.parametrize(
    ("value", "expected"), [("5,300", (5.0, 300.0)), ([0, 1.5], (0.0, 1.5)), ((7,), (7.0,)), ("", ())]
)
def test_parse_schedule(value: object, expected: tuple[float, ...]) -> None:
    assert parse_schedule(value) == expected


@pytest.mark.parametrize("bad", ["x", "1;2", [None], ["1", object()], "nan", [float("inf")], -1, None])
def test_parse_schedule_raises_value_error(bad: object) -> None:
    # endpoints.py turns ValueError (only) into InvalidInput, so nothing else may escape
    with pytest.raises(ValueError):
        parse_schedule(bad)


def test_retention_shorter_than_schedule() -> None:
    with pytest.raises(ValidationError, match="retention_s"):
        Settings(retry_schedule=(100, 100), retry_jitter=0, timeout_s=1, retention_s=150)


def test_retention_accounts_for_jitter_and_timeout() -> None:
    Settings(retry_schedule=(100, 100), retry_jitter=0, timeout_s=1, retention_s=201)
    with pytest.raises(ValidationError):
        Settings(retry_schedule=(100, 100), retry_jitter=0.5, timeout_s=1, retention_s=201)


def test_retention_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_RETENTION_S", "60")
    with pytest.raises(ValidationError):
        Settings()  # the default schedule lasts more than a day


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2])
def test_bad_jitter(jitter: float) -> None:
    with pytest.raises(ValidationError):
        Settings(retry_jitter=jitter)


@pytest.mark.parametrize("prefix", ["", "has space:", "tab\t"])
def test_bad_key_prefix(prefix: str) -> None:
    with pytest.raises(ValidationError):
        Settings(key_prefix=prefix)


def test_readme_settings_table_is_the_generated_one(repo_root: Path) -> None:
    from dispatcher.settings_table import settings_table

    readme = (repo_root / "README.md").read_text()
    block = readme.split("<!-- settings-table -->\n", 1)[1].split("\n<!-- /settings-table -->", 1)[0]
    assert block == settings_table(), "README's settings table is stale: paste settings_table()"
    assert "| `ENDPOINT_INFLIGHT` | `32` |" in block  # the default the code uses, not an older one
