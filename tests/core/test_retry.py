"""The retry schedule and Retry-After parsing."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.retry import next_delay, parse_retry_after

SCHEDULE = (5.0, 300.0, 1800.0, 7200.0)
NOW = 1_700_000_000.0


# -- next_delay -----------------------------------------------------------------------------------
def test_next_delay_follows_schedule_without_jitter() -> None:
    for n, expected in enumerate(SCHEDULE, start=1):
        assert next_delay(SCHEDULE, n, jitter=0) == expected


def test_next_delay_exhausted() -> None:
    assert next_delay(SCHEDULE, len(SCHEDULE) + 1, jitter=0) is None
    assert next_delay(SCHEDULE, 100, jitter=0) is None
    assert next_delay((), 1, jitter=0) is None


@pytest.mark.parametrize("attempts", [0, -1])
def test_next_delay_before_any_failure(attempts: int) -> None:
    assert next_delay(SCHEDULE, attempts, jitter=0) is None


def test_next_delay_uses_given_rng() -> None:
    a = next_delay(SCHEDULE, 2, jitter=0.5, rng=random.Random(7))
    b = next_delay(SCHEDULE, 2, jitter=0.5, rng=random.Random(7))
    assert a == b
    assert a is not None and 150.0 <= a <= 450.0


def test_retry_after_pushes_later() -> None:
    assert next_delay(SCHEDULE, 1, jitter=0, retry_after_s=60) == 60.0


def test_retry_after_never_pulls_earlier() -> None:
    assert next_delay(SCHEDULE, 2, jitter=0, retry_after_s=1) == 300.0
    assert next_delay(SCHEDULE, 2, jitter=0, retry_after_s=0) == 300.0


def test_retry_after_is_capped() -> None:
    assert next_delay(SCHEDULE, 1, jitter=0, retry_after_s=10**9, retry_after_max_s=3600) == 3600.0


def test_retry_after_does_not_revive_exhausted_delivery() -> None:
    assert next_delay(SCHEDULE, len(SCHEDULE) + 1, jitter=0, retry_after_s=10) is None


@settings(max_examples=200, deadline=None)
@given(
    schedule=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=10),
    attempts_pick=st.integers(min_value=0),
    jitter=st.floats(min_value=0, max_value=0.99, allow_nan=False),
    seed=st.integers(),
)
def test_jitter_stays_within_bounds(schedule: list[float], attempts_pick: int, jitter: float, seed: int) -> None:
    n = attempts_pick % len(schedule) + 1
    delay = next_delay(schedule, n, jitter=jitter, rng=random.Random(seed))
    base = schedule[n - 1]
    assert delay is not None
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    schedule=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=10),
    attempts_pick=st.integers(min_value=0),
    jitter=st.floats(min_value=0, max_value=0.99, allow_nan=False),
    retry_after=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    cap=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    seed=st.integers(),
)
def test_retry_after_only_pushes_later_and_is_capped(
    schedule: list[float], attempts_pick: int, jitter: float, retry_after: float, cap: float, seed: int
) -> None:
    n = attempts_pick % len(schedule) + 1
    scheduled = next_delay(schedule, n, jitter=jitter, rng=random.Random(seed))
    delay = next_delay(
        schedule, n, jitter=jitter, retry_after_s=retry_after, retry_after_max_s=cap, rng=random.Random(seed)
    )
    assert scheduled is not None and delay is not None
    assert delay >= scheduled  # never earlier than the schedule
    assert delay <= max(scheduled, cap)  # Retry-After never pushes beyond the cap
    if scheduled < retry_after <= cap:
        assert delay == retry_after


# -- parse_retry_after ----------------------------------------------------------------------------
def _http_date(dt: datetime) -> str:
    return email.utils.format_datetime(dt, usegmt=True)


def test_parse_delta_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("0") == 0.0


def test_parse_future_http_date() -> None:
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    assert parse_retry_after(_http_date(when), now=NOW) == pytest.approx(90.0)


def test_parse_future_http_date_against_real_clock() -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    seconds = parse_retry_after(_http_date(when))
    assert seconds is not None and 3590 <= seconds <= 3600


def test_parse_past_http_date_is_zero() -> None:
    when = datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
    assert parse_retry_after(_http_date(when), now=NOW) == 0.0


@pytest.mark.parametrize(
    "garbage",
    ["soon", "-5", "1.5", "1e3", "Wed, 21 Oct 2015 07:28:00", "Wed, 99 Foo 2015 07:28:00 GMT", "²", "١٢٠", "１２０"],
)
def test_parse_garbage(garbage: str) -> None:
    # a receiver controls this header: anything unparseable is ignored, never raised
    assert parse_retry_after(garbage, now=NOW) is None


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_parse_nothing(empty: str | None) -> None:
    assert parse_retry_after(empty) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0
