"""The event-type catalog against a real Redis: registering checks the schema and the example and writes
nothing when either is bad; enqueue refuses data that does not match a registered type's schema, with
the path and keyword of the failure but none of the data's values; the require-registered setting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from dispatcher import Dispatcher, Settings
from dispatcher.errors import (
    DataMismatch,
    EventTypeNotFound,
    InvalidEventType,
    InvalidInput,
    InvalidSchema,
    UnregisteredEventType,
)
from dispatcher.store.keys import Keys

ORDER = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "card": {"type": "object", "properties": {"number": {"type": "integer"}}},
    },
}
EXAMPLE = {"order_id": "o-1", "amount": 1200}


def keys_under(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


def test_register_get_list_and_unregister(dsp: Dispatcher, settings: Settings) -> None:
    registered = dsp.event_types.register("order.paid", description="An order was paid", schema=ORDER, example=EXAMPLE)
    assert registered.name == "order.paid" and registered.updated_at > 0
    dsp.event_types.register("order.created", schema={"type": "object"})
    other = Dispatcher(settings)  # another producer reads the same catalog from Redis
    try:
        got = other.event_types.get("order.paid")
        assert (got.description, got.schema, got.example) == ("An order was paid", ORDER, EXAMPLE)
        assert [t.name for t in other.event_types.list()] == ["order.created", "order.paid"]
        assert other.event_types.get("order.created").example is None
    finally:
        other.close()
    dsp.event_types.unregister("order.paid")
    assert [t.name for t in dsp.event_types.list()] == ["order.created"]
    with pytest.raises(EventTypeNotFound, match=r"order\.paid"):
        dsp.event_types.get("order.paid")
    with pytest.raises(EventTypeNotFound):
        dsp.event_types.unregister("order.paid")


def test_registering_again_replaces_the_type(dsp: Dispatcher) -> None:
    dsp.event_types.register("order.paid", schema={"type": "object"})
    dsp.enqueue("order.paid", {"anything": True})
    dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
    with pytest.raises(DataMismatch):
        dsp.enqueue("order.paid", {"anything": True})
    assert dsp.event_types.get("order.paid").schema == ORDER


BAD_REGISTRATIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"name": "order paid"}, InvalidEventType, "malformed event type"),
    ({"name": "order.*"}, InvalidEventType, "malformed event type"),
    ({"name": ""}, InvalidEventType, "non-empty"),
    ({"name": "webhook.test"}, InvalidInput, "sent by the dispatcher itself"),
    ({"name": "endpoint.disabled"}, InvalidInput, "sent by the dispatcher itself"),
    ({"schema": "not a schema"}, InvalidSchema, "must be a JSON object"),
    ({"schema": {"type": "strin"}}, InvalidSchema, "not valid JSON Schema at /type"),
    ({"schema": {"minimum": "zero"}}, InvalidSchema, "not valid JSON Schema at /minimum"),
    ({"schema": {"required": "order_id"}}, InvalidSchema, "not valid JSON Schema"),
    ({"schema": {"$ref": "https://example.com/order.json"}}, InvalidSchema, "points outside the schema"),
    ({"schema": {"properties": {"a": {"$ref": "other.json#/x"}}}}, InvalidSchema, "only local references"),
    ({"schema": {"$ref": "#/$defs/missing"}}, InvalidSchema, "leads nowhere"),
    ({"schema": {"$ref": "#nowhere"}}, InvalidSchema, "leads nowhere"),
    ({"schema": {"$schema": "https://example.com/my-draft"}}, InvalidSchema, "unknown $schema"),
    ({"schema": {"x": {1, 2}}}, InvalidSchema, "not JSON"),
    ({"schema": {"description": "x" * 70_000}}, InvalidSchema, "the limit is"),
    ({"example": {"order_id": "o-1"}}, InvalidSchema, "example does not match the schema: at the data itself"),
    ({"example": {"order_id": "o-1", "amount": -5}}, InvalidSchema, "at /amount, keyword 'minimum'"),
    ({"example": {"order_id": "o-1", "amount": {1, 2}}}, InvalidInput, "example is not JSON"),
    ({"description": 5}, InvalidInput, "description must be a string"),
    ({"description": "d" * 1001}, InvalidInput, "longer than 1000"),
    ({"description": "\ud800"}, InvalidInput, "not valid UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "error", "fragment"), BAD_REGISTRATIONS)
def test_bad_registrations_are_refused_clearly_and_write_nothing(
    dsp: Dispatcher,
    raw_redis: redis.Redis,
    prefix: str,
    change: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    args: dict[str, Any] = {"name": "order.paid", "description": "", "schema": ORDER, "example": EXAMPLE, **change}
    name = args.pop("name")
    with pytest.raises(error) as info:
        dsp.event_types.register(name, **args)
    assert fragment in str(info.value)
    assert keys_under(raw_redis, prefix) == set()


def test_local_references_and_anchors_are_accepted(dsp: Dispatcher) -> None:
    schema = {
        "$defs": {"money": {"type": "integer", "minimum": 0}, "sku": {"$anchor": "sku", "type": "string"}},
        "properties": {"amount": {"$ref": "#/$defs/money"}, "sku": {"$ref": "#sku"}},
    }
    dsp.event_types.register("order.paid", schema=schema, example={"amount": 1, "sku": "a"})
    with pytest.raises(DataMismatch, match="at /amount, keyword 'minimum'"):
        dsp.enqueue("order.paid", {"amount": -1})
    with pytest.raises(DataMismatch, match="at /sku, keyword 'type'"):
        dsp.enqueue("order.paid", {"sku": 5})


def test_an_earlier_draft_named_by_dollar_schema_is_used(dsp: Dispatcher) -> None:
    # draft 7's array form of "items" (one schema per position) is not valid draft 2020-12
    tuple_items = {"items": [{"type": "string"}, {"type": "integer"}]}
    with pytest.raises(InvalidSchema):
        dsp.event_types.register("pair.made", schema=tuple_items)
    dsp.event_types.register("pair.made", schema={"$schema": "http://json-schema.org/draft-07/schema#", **tuple_items})
    dsp.enqueue("pair.made", ["a", 1])
    with pytest.raises(DataMismatch, match="at /1, keyword 'type'"):
        dsp.enqueue("pair.made", ["a", "b"])


# -- enqueue -------------------------------------------------------------------------------------------
def test_enqueue_refuses_mismatching_data_naming_path_and_keyword_but_no_value(
    dsp: Dispatcher, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
    before = raw_redis.zcard(store_keys.fanout)
    secret = "4111111111111111-secret"
    with pytest.raises(DataMismatch) as info:
        dsp.enqueue("order.paid", {"order_id": "o-1", "amount": 5, "card": {"number": secret}})
    message = str(info.value)
    assert "'order.paid'" in message and "at /card/number" in message and "keyword 'type'" in message
    assert secret not in message and "4111" not in message
    with pytest.raises(DataMismatch, match="missing 'amount'"):
        dsp.enqueue("order.paid", {"order_id": "o-1"})
    with pytest.raises(DataMismatch, match="at the data itself, keyword 'type' fails \\('object'\\)"):
        dsp.enqueue("order.paid", None)
    assert raw_redis.zcard(store_keys.fanout) == before == 0
    assert dsp.stats()["enqueued_total"] == 0
    event_id = dsp.enqueue("order.paid", EXAMPLE)  # matching data goes through, as does any other type
    assert dsp.event(event_id)["data"] == EXAMPLE
    dsp.enqueue("order.refunded", "anything at all")
    assert raw_redis.zcard(store_keys.fanout) == 2


def test_enqueue_many_refuses_the_whole_batch_naming_the_item(
    dsp: Dispatcher, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
    batch: list[Any] = [("order.paid", EXAMPLE), ("user.created", {}), {"type": "order.paid", "data": {"amount": 1}}]
    with pytest.raises(DataMismatch, match=r"^item 2: data does not match the schema of event type 'order\.paid'"):
        dsp.enqueue_many(batch)
    assert raw_redis.zcard(store_keys.fanout) == 0
    assert len(dsp.enqueue_many(batch[:2])) == 2


def test_unregistering_stops_the_checks(dsp: Dispatcher) -> None:
    dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
    with pytest.raises(DataMismatch):
        dsp.enqueue("order.paid", {})
    dsp.event_types.unregister("order.paid")
    assert dsp.enqueue("order.paid", {})


def test_require_registered_refuses_unregistered_types_but_not_the_dispatchers_own(
    settings_for: Callable[..., Settings],
) -> None:
    dsp = Dispatcher(settings_for(event_types_require_registered=True))
    try:
        with pytest.raises(UnregisteredEventType, match="DISPATCHER_EVENT_TYPES_REQUIRE_REGISTERED"):
            dsp.enqueue("order.paid", EXAMPLE)
        dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
        with pytest.raises(UnregisteredEventType, match=r"^item 1: event type 'user\.created' is not registered"):
            dsp.enqueue_many([("order.paid", EXAMPLE), ("user.created", {})])
        assert dsp.stats()["enqueued_total"] == 0
        assert dsp.enqueue("order.paid", EXAMPLE)
        endpoint = dsp.subscribe("http://127.0.0.1:9/hook", ["order.*"])
        assert dsp.send_test(endpoint.id)  # webhook.test is the dispatcher's own type
        assert dsp.enqueue("endpoint.disabled", {"endpoint_id": endpoint.id})  # sent by workers (worker.health)
    finally:
        dsp.close()
    permissive = Dispatcher(settings_for())
    try:
        assert permissive.enqueue("user.created", {})  # the default: unregistered types pass
    finally:
        permissive.close()


def test_another_producer_sees_a_change_within_the_refresh_period(settings_for: Callable[..., Settings]) -> None:
    producer = Dispatcher(settings_for(event_types_refresh_s=0.3))
    operator = Dispatcher(settings_for())
    try:
        assert producer.enqueue("order.paid", {})  # loads the (empty) catalog
        operator.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
        refused_at = None
        deadline = time.monotonic() + 5
        while refused_at is None and time.monotonic() < deadline:
            try:
                producer.enqueue("order.paid", {})
                time.sleep(0.02)
            except DataMismatch:
                refused_at = time.monotonic()
        assert refused_at is not None, "the producer never saw the registration"
        operator.event_types.unregister("order.paid")
        deadline = time.monotonic() + 5
        while True:
            try:
                producer.enqueue("order.paid", {})
                break
            except DataMismatch:
                assert time.monotonic() < deadline, "the producer never saw the removal"
                time.sleep(0.02)
    finally:
        producer.close()
        operator.close()


def test_an_unusable_stored_schema_refuses_its_events_and_is_left_out_of_listings(
    dsp: Dispatcher, raw_redis: redis.Redis, store_keys: Keys
) -> None:
    dsp.event_types.register("order.paid", schema=ORDER, example=EXAMPLE)
    raw_redis.hset(store_keys.event_types, "order.broken", b'{"schema": {"type": "nope"}}')
    raw_redis.incr(store_keys.event_types_version)
    with pytest.raises(InvalidSchema, match=r"'order\.broken' is unusable"):
        dsp.enqueue("order.broken", {})
    assert [t.name for t in dsp.event_types.list()] == ["order.paid"]
    assert dsp.enqueue("order.paid", EXAMPLE)


def test_the_module_level_catalog_is_the_default_dispatchers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dispatcher

    monkeypatch.setattr(dispatcher, "_default", None)  # restored after the test
    own = dispatcher.configure(settings)
    try:
        registered = dispatcher.event_types.register("order.paid", description="paid", schema=ORDER, example=EXAMPLE)
        assert isinstance(registered, dispatcher.EventType)
        assert [t.name for t in dispatcher.event_types.list()] == ["order.paid"]
        assert dispatcher.event_types.get("order.paid").description == "paid"
        with pytest.raises(dispatcher.DataMismatch):
            dispatcher.enqueue("order.paid", {})
        dispatcher.event_types.unregister("order.paid")
        assert own.event_types.list() == []
    finally:
        own.close()


def test_the_builtin_types_are_the_ones_the_dispatcher_sends() -> None:
    from dispatcher.defaults import BUILTIN_EVENT_TYPES
    from dispatcher.worker.health import DISABLED_EVENT

    assert {DISABLED_EVENT, "webhook.test"} == BUILTIN_EVENT_TYPES
