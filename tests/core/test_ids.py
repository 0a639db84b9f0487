"""Identifiers: prefixed, URL-safe, unique, time-ordered; delivery ids derived deterministically."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from dispatcher import ids
from dispatcher.ids import delivery_id, new_id

ID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")  # Crockford base32: no I, L, O, U


def _at_ms(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: ms * 1_000_000 + 123))


def test_new_id_shape() -> None:
    value = new_id("msg")
    prefix, _, rest = value.partition("_")
    assert prefix == "msg"
    assert len(value) == len("msg_") + 26
    assert ID_RE.fullmatch(rest)


@pytest.mark.parametrize("prefix", ["ep", "msg", "dlv", "x"])
def test_new_id_prefixes(prefix: str) -> None:
    value = new_id(prefix)
    assert value.startswith(prefix + "_")
    assert ID_RE.fullmatch(value[len(prefix) + 1 :])


def test_new_id_unique() -> None:
    values = [new_id("msg") for _ in range(5000)]
    assert len(set(values)) == len(values)


def test_new_id_unique_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    _at_ms(monkeypatch, 1_700_000_000_000)
    values = {new_id("msg") for _ in range(1000)}
    assert len(values) == 1000
    assert len({v[:14] for v in values}) == 1  # same 48-bit time part (10 chars)


def test_new_id_sorts_by_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    times = [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002, 1_700_000_001_000, 1_800_000_000_000]
    made: list[str] = []
    for ms in times:
        _at_ms(monkeypatch, ms)
        made.extend(new_id("msg") for _ in range(20))
    # every id of an earlier millisecond sorts before every id of a later one
    for i in range(len(times) - 1):
        assert max(made[i * 20 : (i + 1) * 20]) < min(made[(i + 1) * 20 : (i + 2) * 20])
    assert sorted(made[::20]) == made[::20]


def test_new_id_encodes_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = 1_700_000_123_456
    _at_ms(monkeypatch, ms)
    body = new_id("msg")[4:]
    value = 0
    for ch in body:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    assert value >> 80 == ms


def test_delivery_id_deterministic() -> None:
    a = delivery_id("msg_1", "ep_1")
    assert a == delivery_id("msg_1", "ep_1")
    assert a.startswith("dlv_")
    assert ID_RE.fullmatch(a[4:])


def test_delivery_id_differs_per_pair() -> None:
    pairs = [("msg_1", "ep_1"), ("msg_1", "ep_2"), ("msg_2", "ep_1"), ("msg_12", "ep_"), ("msg_", "1ep_1")]
    assert len({delivery_id(e, p) for e, p in pairs}) == len(pairs)
    assert delivery_id("msg_1", "ep_1") != delivery_id("ep_1", "msg_1")
