"""The producer API against a real Redis: endpoints, enqueue validation, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from dispatcher import (
    Dispatcher,
    EndpointNotFound,
    InvalidEventType,
    InvalidInput,
    InvalidState,
    InvalidURL,
    PayloadNotSerializable,
    PayloadTooLarge,
    UnsafeTarget,
)
from dispatcher.ids import delivery_id
from dispatcher.settings import Settings


def keys_of(client: redis.Redis, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}*", count=1000))


def test_subscribe_generates_secret_and_lists(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("http://127.0.0.1:9/hook", ["user.created", "order.*"])
    assert ep.secret.startswith("whsec_")
    assert ep.enabled and ep.event_types == ["user.created", "order.*"]
    assert dsp.get_endpoint(ep.id) == ep
    assert [e.id for e in dsp.list_endpoints()] == [ep.id]
    assert dsp.disable_endpoint(ep.id).enabled is False
    assert dsp.enable_endpoint(ep.id).enabled is True
    dsp.unsubscribe(ep.id)
    with pytest.raises(EndpointNotFound):
        dsp.get_endpoint(ep.id)
    with pytest.raises(EndpointNotFound):
        dsp.unsubscribe(ep.id)


def test_subscribe_keeps_given_secret(dsp: Dispatcher) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert dsp.subscribe("https://example.com/h", ["*"], secret=secret).secret == secret


@pytest.mark.parametrize(
    ("url", "types", "secret", "error"),
    [
        ("ftp://example.com/", ["*"], None, InvalidURL),
        ("not a url", ["*"], None, InvalidURL),
        ("https://example.com/", [], None, InvalidEventType),
        ("https://example.com/", ["bad type"], None, InvalidEventType),
        ("https://example.com/", "user.created", None, InvalidEventType),
        ("https://example.com/", ["*"], "whsec_!!!", InvalidInput),
        ("https://example.com/", ["*"], "whsec_c2hvcnQ=", InvalidInput),
    ],
)
def test_subscribe_rejects_bad_input_and_writes_nothing(
    dsp: Dispatcher, raw_redis: redis.Redis, prefix: str, url: str, types: object, secret: str | None, error: type
) -> None:
    with pytest.raises(error):
        dsp.subscribe(url, types, secret=secret)  # type: ignore[arg-type]
    assert keys_of(raw_redis, prefix) == set()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/", "http://localhost/", "http://10.0.0.1/", "http://169.254.169.254/latest",
     "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://2130706433/"],
)  # fmt: skip
def test_private_targets_refused_by_default(
    settings_for: Callable[..., Settings], prefix: str, raw_redis: redis.Redis, url: str
) -> None:
    d = Dispatcher(settings_for(allow_private_targets=False))
    with pytest.raises(UnsafeTarget):
        d.subscribe(url, ["*"])
    assert keys_of(raw_redis, prefix) == set()
    d.close()


def test_default_settings_refuse_private_targets() -> None:
    assert Settings().allow_private_targets is False


def test_enqueue_writes_event_and_returns_id(dsp: Dispatcher) -> None:
    eid = dsp.enqueue("user.created", {"id": 1})
    event = dsp.event(eid)
    assert event["id"] == eid and event["type"] == "user.created" and event["data"] == {"id": 1}
    claimed = dsp.store.queue.claim_events(10).events  # queued for fan-out, with what matching needs
    assert [(e.id, e.type, e.only) for e in claimed] == [(eid, "user.created", None)]


@pytest.mark.parametrize(
    ("etype", "data", "error"),
    [
        ("", {}, InvalidEventType),
        ("bad..type", {}, InvalidEventType),
        (None, {}, InvalidEventType),
        ("user.created", {"x": {1, 2}}, PayloadNotSerializable),
        ("user.created", object(), PayloadNotSerializable),
        ("user.created", {"x": "a" * 300_000}, PayloadTooLarge),
    ],
)
def test_enqueue_rejects_bad_input_and_writes_nothing(
    dsp: Dispatcher, raw_redis: redis.Redis, prefix: str, etype: object, data: object, error: type
) -> None:
    with pytest.raises(error):
        dsp.enqueue(etype, data)  # type: ignore[arg-type]
    assert keys_of(raw_redis, prefix) == set()


def test_enqueue_many_is_all_or_nothing(dsp: Dispatcher, raw_redis: redis.Redis, prefix: str) -> None:
    with pytest.raises(PayloadNotSerializable, match="item 2"):
        dsp.enqueue_many([("a.b", {}), {"type": "a.c", "data": 1}, ("a.d", {1, 2})])
    assert keys_of(raw_redis, prefix) == set()
    ids = dsp.enqueue_many([("a.b", {}), {"type": "a.c", "data": 1}])
    assert len(ids) == 2 and dsp.redis.zcard(dsp.keys.fanout) == 2


def test_enqueue_many_large_batch(dsp: Dispatcher) -> None:
    ids = dsp.enqueue_many(("load.test", {"i": i}) for i in range(2500))
    assert len(set(ids)) == 2500
    assert dsp.redis.zcard(dsp.keys.fanout) == 2500


def test_idempotency_key_returns_first_id(dsp: Dispatcher) -> None:
    first = dsp.enqueue("order.paid", {"n": 1}, idempotency_key="order-1")
    again = dsp.enqueue("order.paid", {"n": 2}, idempotency_key="order-1")
    other = dsp.enqueue("order.paid", {"n": 3}, idempotency_key="order-2")
    assert again == first and other != first
    assert dsp.redis.zcard(dsp.keys.fanout) == 2
    assert dsp.event(first)["data"] == {"n": 1}


def test_explicit_event_id_is_sent_once(dsp: Dispatcher) -> None:
    assert dsp.enqueue("order.paid", {}, event_id="msg_fixed") == "msg_fixed"
    assert dsp.enqueue("order.paid", {}, event_id="msg_fixed") == "msg_fixed"
    assert dsp.redis.zcard(dsp.keys.fanout) == 1


def test_enqueue_many_dedupes_within_batch(dsp: Dispatcher) -> None:
    ids = dsp.enqueue_many(
        [{"type": "a.b", "data": 1, "idempotency_key": "k"}, {"type": "a.b", "data": 2, "idempotency_key": "k"}]
    )
    assert ids[0] == ids[1]
    assert dsp.redis.zcard(dsp.keys.fanout) == 1


def test_update_endpoint_validates(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://example.com/h", ["*"])
    with pytest.raises(InvalidInput):
        dsp.update_endpoint(ep.id, max_batch=0)
    with pytest.raises(InvalidInput):
        dsp.update_endpoint(ep.id, colour="red")
    updated = dsp.update_endpoint(ep.id, max_batch=10, retry_schedule="1,2", event_types=["a.*"])
    assert (updated.max_batch, updated.retry_schedule, updated.event_types) == (10, [1.0, 2.0], ["a.*"])


def test_store_unavailable_is_clear(settings_for: Callable[..., Settings]) -> None:
    from dispatcher import StoreUnavailable

    d = Dispatcher(settings_for(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(StoreUnavailable):
        d.enqueue("a.b", {})


# -- bad input ----------------------------------------------------------------------------------
def test_deeply_nested_data_is_refused_and_nothing_written(
    dsp: Dispatcher, raw_redis: redis.Redis, prefix: str
) -> None:
    data: Any = {}
    node = data
    for _ in range(1000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(PayloadNotSerializable):
        dsp.enqueue("deep.data", data)
    with pytest.raises(PayloadNotSerializable):
        dsp.enqueue("bad.text", {"s": "\ud800"})  # a lone surrogate is not valid UTF-8
    with pytest.raises(InvalidInput):
        dsp.enqueue("bad.key", {1: "non-string key"})
    assert list(raw_redis.scan_iter(match=f"{prefix}*")) == []


def test_secrets_never_in_errors_or_listings(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://example.com/hook", ["*"])
    assert ep.secret not in repr(ep) and ep.secret not in str(ep)
    assert ep.secret not in str(ep.masked())
    rotated = dsp.rotate_secret(ep.id)
    assert ep.secret not in str(rotated.masked()) and rotated.secret not in str(rotated.masked())


def test_a_test_event_to_a_disabled_endpoint_is_refused_not_dropped(dsp: Dispatcher) -> None:
    ep = dsp.subscribe("https://example.com/h", ["*"])
    dsp.disable_endpoint(ep.id, "maintenance")
    with pytest.raises(InvalidState, match="disabled"):
        dsp.send_test(ep.id)
    dsp.enable_endpoint(ep.id)
    assert dsp.send_test(ep.id)


def test_replay_is_recorded_even_when_the_kick_cannot_be_published(
    settings: Settings, dsp: Dispatcher, raw_redis: redis.Redis
) -> None:
    ep = dsp.subscribe("https://example.com/h", ["*"])
    event_id = dsp.enqueue("a.b", {})
    did = delivery_id(event_id, ep.id)
    raw_redis.hset(dsp.keys.delivery(did), mapping={"evt": event_id, "ep": ep.id, "state": "dead", "n": 1, "r": 1})
    broken = Dispatcher(settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"}))  # nothing listens there
    try:
        assert broken.replay(did) == 1  # no exception after the replay was written
    finally:
        broken.close()
    assert dsp.get_delivery(did).state.value == "pending"


def test_listing_by_state_reads_a_page_at_a_time(dsp: Dispatcher, raw_redis: redis.Redis) -> None:
    ep = dsp.subscribe("https://example.com/h", ["*"])
    listing = dsp.keys.endpoint_deliveries(ep.id)
    for i in range(450):
        did = f"dlv_{i:04d}"
        state = "delivered" if i % 150 else "retrying"
        raw_redis.hset(dsp.keys.delivery(did), mapping={"evt": "e", "ep": ep.id, "state": state, "n": 0})
        raw_redis.zadd(listing, {did: i})
    found = dsp.endpoint_deliveries(ep.id, "retrying", limit=2)
    assert [d.id for d in found] == ["dlv_0300", "dlv_0150"]  # newest first, across pages
    assert [d.id for d in dsp.endpoint_deliveries(ep.id, "retrying", limit=10)] == ["dlv_0300", "dlv_0150", "dlv_0000"]
