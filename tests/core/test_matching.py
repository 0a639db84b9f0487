"""Event types, subscription patterns and the PatternIndex."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.errors import InvalidEventType, InvalidInput
from dispatcher.matching import (
    MAX_TYPE_LENGTH,
    PatternIndex,
    matches,
    validate_event_type,
    validate_pattern,
    validate_patterns,
)


@pytest.mark.parametrize("good", ["user.created", "user", "a-b_c.D9", "order.refund.created", "x" * MAX_TYPE_LENGTH])
def test_validate_event_type_accepts(good: str) -> None:
    assert validate_event_type(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", None, 42, b"user.created", "a..b", ".a", "a.", "with space", "x" * (MAX_TYPE_LENGTH + 1), "order.*", "*",
     "a/b", "ünïcode", "tab\t", "user.created\n", "user\r\n", "\nuser"],
)  # fmt: skip
def test_validate_event_type_rejects(bad: object) -> None:
    with pytest.raises(InvalidEventType):
        validate_event_type(bad)


def test_invalid_event_type_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        validate_event_type("a..b")


@pytest.mark.parametrize("good", ["*", "order.*", "order.refund.*", "order.paid", "order"])
def test_validate_pattern_accepts(good: str) -> None:
    assert validate_pattern(good) == good


@pytest.mark.parametrize(
    "bad", ["", None, ".*", "*.*", "order.**", "order*", "*.paid", "order.*.paid", "a..b.*", "a b", "order.*\n", "a\n"]
)
def test_validate_pattern_rejects(bad: object) -> None:
    with pytest.raises(InvalidEventType):
        validate_pattern(bad)


def test_validate_patterns_dedupes_and_keeps_order() -> None:
    assert validate_patterns(["b.*", "a", "b.*", "*", "a"]) == ["b.*", "a", "*"]


@pytest.mark.parametrize("bad", [[], "order.*", None, 5, ["ok", "a..b"]])
def test_validate_patterns_rejects(bad: object) -> None:
    with pytest.raises(InvalidEventType):
        validate_patterns(bad)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "anything", True),
        ("*", "order.paid", True),
        ("order.paid", "order.paid", True),
        ("order.paid", "order.paid.late", False),
        ("order.paid", "order", False),
        ("order.*", "order.paid", True),
        ("order.*", "order.refund.created", True),
        ("order.*", "order", False),
        ("order.*", "orders.paid", False),
        ("order.*", "xorder.paid", False),
        ("order.refund.*", "order.refund.created", True),
        ("order.refund.*", "order.paid", False),
    ],
)
def test_matches(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


class Sub:
    """A subscriber; identity matters, equality does not."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Sub({self.name})"


def test_index_basic() -> None:
    idx: PatternIndex[Sub] = PatternIndex()
    every, orders, paid, refunds = Sub("every"), Sub("orders"), Sub("paid"), Sub("refunds")
    idx.add(["*"], every)
    idx.add(["order.*"], orders)
    idx.add(["order.paid"], paid)
    idx.add(["order.refund.*"], refunds)
    assert idx.match("order.paid") == [every, paid, orders]
    assert idx.match("order.refund.created") == [every, orders, refunds]
    assert idx.match("order") == [every]
    assert idx.match("orders.paid") == [every]
    assert idx.match("user.created") == [every]


def test_index_empty() -> None:
    idx: PatternIndex[Sub] = PatternIndex()
    assert idx.match("order.paid") == []


def test_index_returns_each_subscriber_once() -> None:
    idx: PatternIndex[Sub] = PatternIndex()
    a, b = Sub("a"), Sub("b")
    idx.add(["order.*", "order.paid", "*", "order.paid"], a)
    idx.add(["order.paid"], b)
    found = idx.match("order.paid")
    assert found == [a, b]
    assert idx.match("order.refund") == [a]


_WORDS = st.sampled_from(["a", "b", "c", "order", "paid"])
_TYPES = st.lists(_WORDS, min_size=1, max_size=4).map(".".join)
_PATTERNS = st.one_of(st.just("*"), _TYPES, _TYPES.map(lambda t: t + ".*"))


@settings(max_examples=200, deadline=None)
@given(
    subscriptions=st.lists(st.lists(_PATTERNS, min_size=1, max_size=4), max_size=8),
    event_types=st.lists(_TYPES, min_size=1, max_size=8),
)
def test_index_agrees_with_matches(subscriptions: list[list[str]], event_types: list[str]) -> None:
    idx: PatternIndex[Sub] = PatternIndex()
    subs = []
    for n, patterns in enumerate(subscriptions):
        for p in patterns:
            assert validate_pattern(p) == p
        sub = Sub(str(n))
        subs.append((sub, patterns))
        idx.add(patterns, sub)
    for et in event_types:
        found = idx.match(et)
        expected = {id(s) for s, patterns in subs if any(matches(p, et) for p in patterns)}
        assert len(found) == len({id(s) for s in found}), "a subscriber was returned twice"
        assert {id(s) for s in found} == expected
        assert idx.match(et) == found  # stable order
