"""Building events: validation, the encoded body and all-or-nothing batches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest

from dispatcher.errors import InvalidEventType, InvalidInput, PayloadNotSerializable, PayloadTooLarge
from dispatcher.events import NewEvent, build_event, build_many, script_args

MAX = 256 * 1024


def _body(ev: NewEvent) -> dict[str, Any]:
    decoded = orjson.loads(ev.body)
    assert isinstance(decoded, dict)
    return decoded


def test_build_event_body_shape() -> None:
    ev = build_event("order.paid", {"amount": 12, "items": ["a", "b"]}, max_bytes=MAX)
    body = _body(ev)
    assert set(body) == {"id", "type", "timestamp", "data"}
    assert body["id"] == ev.id
    assert body["type"] == ev.type == "order.paid"
    assert body["data"] == {"amount": 12, "items": ["a", "b"]}
    assert ev.id.startswith("msg_")
    assert ev.idempotency_key == ""


def test_timestamp_is_iso8601_utc_with_z() -> None:
    body = _body(build_event("user.created", None, max_bytes=MAX))
    stamp = body["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("data", [None, 0, "text", [1, 2], {"nested": {"deep": [True, None, 1.5]}}])
def test_any_json_data(data: object) -> None:
    assert _body(build_event("a.b", data, max_bytes=MAX))["data"] == data


def test_explicit_event_id_and_idempotency_key() -> None:
    ev = build_event("a.b", {}, event_id="order-42.v1_x", idempotency_key="any thing: goes/here", max_bytes=MAX)
    assert ev.id == "order-42.v1_x"
    assert _body(ev)["id"] == "order-42.v1_x"
    assert ev.idempotency_key == "any thing: goes/here"


def test_generated_ids_are_unique() -> None:
    assert len({build_event("a", None, max_bytes=MAX).id for _ in range(100)}) == 100


class Opaque:
    pass


@pytest.mark.parametrize("data", [{1, 2}, Opaque(), {"inner": {3}}, {"when": b"bytes"}, 2**70, {1: "non-str key"}])
def test_not_serialisable(data: object) -> None:
    with pytest.raises(PayloadNotSerializable):
        build_event("a.b", data, max_bytes=MAX)


@pytest.mark.parametrize("event_type", ["", None, 7, "a..b", ".a", "a.", "with space", "x" * 129, "order.*", "a\n"])
def test_malformed_type(event_type: object) -> None:
    with pytest.raises(InvalidEventType):
        build_event(event_type, {}, max_bytes=MAX)


def test_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        build_event("a.b", "x" * 2000, max_bytes=1000)


def test_size_limit_is_on_the_encoded_body() -> None:
    ev = build_event("a.b", "", event_id="e1", max_bytes=MAX)
    overhead = len(ev.body)
    fits = build_event("a.b", "x" * 100, event_id="e1", max_bytes=overhead + 100)
    assert len(fits.body) == overhead + 100
    with pytest.raises(PayloadTooLarge):
        build_event("a.b", "x" * 101, event_id="e1", max_bytes=overhead + 100)


@pytest.mark.parametrize("event_id", ["", "has space", "a/b", "a:b", "ü", "x" * 129, "id\n", 5, b"bytes"])
def test_bad_event_id(event_id: object) -> None:
    with pytest.raises(InvalidInput):
        build_event("a.b", {}, event_id=event_id, max_bytes=MAX)


@pytest.mark.parametrize("key", ["", "k" * 257, 5])
def test_bad_idempotency_key(key: object) -> None:
    with pytest.raises(InvalidInput):
        build_event("a.b", {}, idempotency_key=key, max_bytes=MAX)


# -- build_many -----------------------------------------------------------------------------------
def test_build_many_tuples_and_dicts() -> None:
    events = build_many(
        [
            ("order.paid", {"n": 1}),
            ["order.refund", {"n": 2}],
            {"type": "user.created", "data": {"n": 3}},
            {"type": "user.deleted", "data": None, "event_id": "evt-1", "idempotency_key": "k1"},
            {"type": "user.updated", "id": "evt-2"},
        ],
        MAX,
    )
    assert [e.type for e in events] == ["order.paid", "order.refund", "user.created", "user.deleted", "user.updated"]
    assert [_body(e)["data"] for e in events] == [{"n": 1}, {"n": 2}, {"n": 3}, None, None]
    assert events[3].id == "evt-1" and events[3].idempotency_key == "k1"
    assert events[4].id == "evt-2"


def test_build_many_empty() -> None:
    assert build_many([], MAX) == []


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (("a..b", {}), InvalidEventType),
        (("a.b", {1, 2}), PayloadNotSerializable),
        (("a.b", "x" * 5000), PayloadTooLarge),
        ({"data": {}}, InvalidInput),  # no type
        ({"type": "a.b", "surprise": 1}, InvalidInput),
        ({"type": "a.b", "event_id": "bad id"}, InvalidInput),
        ("a.b", InvalidInput),  # a bare string is not a pair
        (("a.b",), InvalidInput),
        (("a.b", {}, "extra"), InvalidInput),
        (42, InvalidInput),
    ],
)
def test_build_many_rejects_bad_item_with_its_index(bad: object, error: type[Exception]) -> None:
    built: list[int] = []

    def items() -> Iterator[object]:
        yield ("ok.one", {})
        built.append(0)
        yield {"type": "ok.two", "data": {}}
        built.append(1)
        yield bad
        built.append(2)
        yield ("ok.three", {})
        built.append(3)

    with pytest.raises(error, match=r"^item 2: ") as info:
        build_many(items(), 4096)
    assert type(info.value) is error  # the specific error class survives the re-raise
    assert built == [0, 1]  # stopped at the bad item; nothing was returned


def test_script_args_flattens_events() -> None:
    events = build_many([("a", 1), ("b", 2)], MAX)
    args = script_args(events)
    assert args == [events[0].id, "a", events[0].body, "", "", events[1].id, "b", events[1].body, "", ""]


def test_endpoint_ids_restrict_the_event() -> None:
    ev = build_event("a.b", {}, endpoint_ids=["ep_1", "ep_2"], max_bytes=MAX)
    assert ev.only == "ep_1,ep_2"
    for bad in ("ep_1", [], ["ep 1"], [None]):
        with pytest.raises(InvalidInput):
            build_event("a.b", {}, endpoint_ids=bad, max_bytes=MAX)
