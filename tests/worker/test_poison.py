"""Poison records: no stored record, however malformed, stops fan-out or delivery of any other.

Each test writes garbage into one kind of record the way a bug, an operator or an attacker with Redis
access could, then checks that a healthy endpoint still gets its events, and that the bad record is set
aside with a reason a person can read and counted in ``stats:poison``.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher import Dispatcher
from dispatcher.models import DeliveryState
from dispatcher.ssrf import parse_target
from dispatcher.worker.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import Receiver


def _delivered_to(receiver: Receiver, event_id: str) -> bool:
    return any(r.headers.get("webhook-id") == event_id for r in receiver.requests)


def _healthy_still_served(dsp: Dispatcher, runtime: Runtime, healthy: Receiver, pump: Callable[..., Any]) -> None:
    event_id = dsp.enqueue("health.check", {"at": time.time()})
    pump(runtime, lambda: _delivered_to(healthy, event_id), timeout_s=10)


def _poison(raw_redis: redis.Redis, dsp: Dispatcher) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw_redis.hgetall(dsp.keys.stats_poison).items()}


@pytest.fixture
def healthy(dsp: Dispatcher, receiver_factory: Callable[..., Receiver]) -> Receiver:
    rec = receiver_factory()
    dsp.subscribe(rec.url, ["*"])
    return rec


# -- endpoints ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "garbage",
    [b"not json", b"{}", b"[1, 2]", b'{"id": "ep_x"}', b"\xff\xfe", b'{"id": 1, "url": [], "secret": null}'],
)
def test_an_endpoint_record_that_does_not_read_is_quarantined(
    garbage: bytes,
    dsp: Dispatcher,
    runtime: Runtime,
    raw_redis: redis.Redis,
    healthy: Receiver,
    pump: Callable[..., Any],
) -> None:
    doomed = dsp.subscribe(healthy.url_for("doomed"), ["*"])
    event_id = dsp.enqueue("a.b", {})
    pump(runtime, lambda: any(d.endpoint_id == doomed.id for d in dsp.deliveries(event_id)))
    raw_redis.hset(dsp.keys.endpoints, doomed.id, garbage)
    raw_redis.incr(dsp.keys.endpoints_version)
    _healthy_still_served(dsp, runtime, healthy, pump)
    assert [e.id for e in dsp.list_endpoints()] != [] and doomed.id not in {e.id for e in dsp.list_endpoints()}
    pump(runtime, lambda: not raw_redis.hexists(dsp.keys.endpoints, doomed.id))  # set aside by the worker
    kept = orjson.loads(raw_redis.hget(dsp.keys.endpoints_quarantine, doomed.id))
    assert "endpoint record unusable" in kept["reason"] and kept["raw"]
    assert _poison(raw_redis, dsp)["endpoint"] == 1
    assert dsp.stats()["poison_records"] == {"endpoint": 1}  # what /metrics shows


def test_an_endpoint_whose_url_the_sender_refuses_is_disabled_with_the_reason(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    doomed = dsp.subscribe(healthy.url_for("doomed"), ["*"])
    record = orjson.loads(raw_redis.hget(dsp.keys.endpoints, doomed.id))
    record["url"] = "http://[2606:4700::1111%25a\\b]/"  # what once halted every worker
    raw_redis.hset(dsp.keys.endpoints, doomed.id, orjson.dumps(record))
    raw_redis.incr(dsp.keys.endpoints_version)
    event_id = dsp.enqueue("a.b", {})
    _healthy_still_served(dsp, runtime, healthy, pump)
    pump(runtime, lambda: not dsp.get_endpoint(doomed.id).enabled)
    assert "url" in (dsp.get_endpoint(doomed.id).disabled_reason or "").lower()
    assert _delivered_to(healthy, event_id)


def test_a_robot_whose_template_does_not_compile_is_disabled(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    robot = dsp.subscribe(healthy.url_for("slack"), ["*"], kind="slack")
    record = orjson.loads(raw_redis.hget(dsp.keys.endpoints, robot.id))
    record["template"] = "{unclosed"
    raw_redis.hset(dsp.keys.endpoints, robot.id, orjson.dumps(record))
    raw_redis.incr(dsp.keys.endpoints_version)
    dsp.enqueue("a.b", {})
    _healthy_still_served(dsp, runtime, healthy, pump)
    pump(runtime, lambda: not dsp.get_endpoint(robot.id).enabled)
    assert "template" in (dsp.get_endpoint(robot.id).disabled_reason or "").lower()


@pytest.mark.parametrize("garbage", ["string", "hash-tat"])
def test_rate_limit_state_of_the_wrong_shape_starts_afresh(
    garbage: str, dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    limited = dsp.subscribe(healthy.url_for("limited"), ["limited.*"], rate_limit_per_s=50)
    key = dsp.keys.rate_limit(limited.id)
    if garbage == "string":
        raw_redis.set(key, "garbage")
    else:
        raw_redis.hset(key, mapping={"tat": "garbage", "d:x": "nope"})
    event_id = dsp.enqueue("limited.x", {})
    pump(runtime, lambda: _delivered_to(healthy, event_id))
    _healthy_still_served(dsp, runtime, healthy, pump)


# -- events ---------------------------------------------------------------------------------------------
def test_an_event_record_overwritten_by_another_type_is_passed_over(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    bad = dsp.enqueue("a.b", {"bad": True})
    raw_redis.delete(dsp.keys.event(bad))
    raw_redis.set(dsp.keys.event(bad), "not a hash")
    _healthy_still_served(dsp, runtime, healthy, pump)
    assert not _delivered_to(healthy, bad)
    assert _poison(raw_redis, dsp)["event"] == 1


def test_an_event_with_a_garbage_timestamp_is_still_delivered(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    odd = dsp.enqueue("a.b", {})
    raw_redis.hset(dsp.keys.event(odd), "ts", "yesterday")
    pump(runtime, lambda: _delivered_to(healthy, odd))


def test_an_event_a_robot_cannot_render_goes_dead_with_the_reason(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    robot = dsp.subscribe(healthy.url_for("slack"), ["robot.*"], kind="slack")
    bad = dsp.enqueue("robot.x", {})
    raw_redis.hset(dsp.keys.event(bad), "body", b"\x00 not json")
    pump(runtime, lambda: [d.state for d in dsp.deliveries(bad) if d.endpoint_id == robot.id] == [DeliveryState.DEAD])
    (delivery,) = [d for d in dsp.deliveries(bad) if d.endpoint_id == robot.id]
    assert "event unusable" in (delivery.attempts[-1].error or "")
    _healthy_still_served(dsp, runtime, healthy, pump)


# -- deliveries -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("job", [b"", b"garbage", b"msg_x ep_y not-a-number 0", b"a b c d e f"])
def test_a_queued_delivery_whose_job_does_not_read_is_dropped(
    job: bytes,
    dsp: Dispatcher,
    runtime: Runtime,
    raw_redis: redis.Redis,
    healthy: Receiver,
    pump: Callable[..., Any],
) -> None:
    raw_redis.zadd(dsp.keys.due, {"dlv_poison": 0})
    if job:
        raw_redis.hset(dsp.keys.jobs, "dlv_poison", job)
    _healthy_still_served(dsp, runtime, healthy, pump)
    assert raw_redis.zscore(dsp.keys.due, "dlv_poison") is None and not raw_redis.hexists(dsp.keys.jobs, "dlv_poison")
    assert _poison(raw_redis, dsp)["delivery"] == 1


def test_a_delivery_record_overwritten_by_another_type_does_not_stop_the_batch(
    dsp: Dispatcher,
    runtime: Runtime,
    raw_redis: redis.Redis,
    receiver_factory: Callable[..., Receiver],
    healthy: Receiver,
    pump: Callable[..., Any],
) -> None:
    failing = receiver_factory(reply=lambda n, r: (500, {}, b"down"))
    broken = dsp.subscribe(failing.url, ["fail.*"])
    event_id = dsp.enqueue("fail.x", {})
    pump(runtime, lambda: dsp.deliveries(event_id))
    (delivery,) = [d for d in dsp.deliveries(event_id) if d.endpoint_id == broken.id]
    raw_redis.delete(dsp.keys.delivery(delivery.id))
    raw_redis.set(dsp.keys.delivery(delivery.id), "not a hash")
    pump(runtime, lambda: failing.count() >= 2)  # attempts go on, recorded or not
    _healthy_still_served(dsp, runtime, healthy, pump)
    assert dsp.endpoint_deliveries(delivery.endpoint_id) == []  # the unreadable record is left out, no error


# -- pull logs ------------------------------------------------------------------------------------------
def test_a_pull_log_entry_that_does_not_read_is_skipped(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, api: TestClient, pump: Callable[..., Any]
) -> None:
    poll = dsp.subscribe_poll(["*"])
    first = dsp.enqueue("a.b", {"n": 1})
    pump(runtime, lambda: raw_redis.xlen(dsp.keys.stream(poll.id)) == 1)
    raw_redis.xadd(dsp.keys.stream(poll.id), {"prev": "0-0", "id": "msg_bad", "type": "a.b", "body": b"{not json"})
    raw_redis.xadd(dsp.keys.stream(poll.id), {"garbage": "1"})
    last = dsp.enqueue("a.b", {"n": 2})
    pump(runtime, lambda: raw_redis.xlen(dsp.keys.stream(poll.id)) == 4)
    page = api.get(f"/v1/endpoints/{poll.id}/poll").json()
    assert [e["id"] for e in page["events"]] == [first, last]


def test_a_pull_log_of_the_wrong_type_does_not_stop_the_fanout(
    dsp: Dispatcher, runtime: Runtime, raw_redis: redis.Redis, healthy: Receiver, pump: Callable[..., Any]
) -> None:
    poll = dsp.subscribe_poll(["*"])
    raw_redis.set(dsp.keys.stream(poll.id), "not a stream")
    _healthy_still_served(dsp, runtime, healthy, pump)
    assert _poison(raw_redis, dsp)["event"] >= 1


# -- the property: whatever is saved or written, a healthy endpoint is served ------------------------------
URL_TEXT = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
        st.text(alphabet=string.printable + "[]%:@\\ü\ud800", max_size=40),
        st.text(alphabet=string.printable + "%ü\ud800", max_size=40),
    ),
)
GARBAGE = st.one_of(st.binary(max_size=60), st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")))
RECORD_KINDS = st.sampled_from(
    ["endpoint-json", "endpoint-url", "event-body", "event-ts", "event-type", "job", "delivery-field", "stream", "rate"]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=URL_TEXT, kind=RECORD_KINDS, garbage=GARBAGE)
def test_property_no_saved_url_or_garbage_record_stops_a_healthy_endpoint(
    url: str,
    kind: str,
    garbage: bytes,
    dsp: Dispatcher,
    runtime: Runtime,
    raw_redis: redis.Redis,
    api: TestClient,
    healthy: Receiver,
    pump: Callable[..., Any],
) -> None:
    # ASCII JSON (``\\ud800`` escapes): a lone surrogate reaches the API as JSON text allows it
    body = json.dumps({"url": url, "event_types": ["never.sent"]}, ensure_ascii=True)
    resp = api.post("/v1/endpoints", content=body, headers={"content-type": "application/json"})
    assert resp.status_code in (201, 400, 422), resp.text  # saved as the sender reads it, or refused: never a 500
    if resp.status_code == 201:
        saved = dsp.get_endpoint(resp.json()["id"]).url
        assert parse_target(saved).url == saved  # what is saved is what the sender reads and sends
    victim = dsp.subscribe(healthy.url_for("victim"), ["victim.*"], kind="slack")
    event_id = dsp.enqueue("victim.x", {"v": 1})
    pump(runtime, lambda: dsp.deliveries(event_id))
    (delivery,) = [d for d in dsp.deliveries(event_id) if d.endpoint_id == victim.id]
    k = dsp.keys
    target = {
        "endpoint-json": lambda: raw_redis.hset(k.endpoints, victim.id, garbage),
        "endpoint-url": lambda: raw_redis.hset(
            k.endpoints, victim.id, orjson.dumps({**victim.model_dump(), "url": garbage.decode("utf-8", "replace")})
        ),
        "event-body": lambda: raw_redis.hset(k.event(event_id), "body", garbage),
        "event-ts": lambda: raw_redis.hset(k.event(event_id), "ts", garbage),
        "event-type": lambda: raw_redis.zadd(k.fanout, {b"msg_garbage " + garbage.replace(b" ", b"_"): 0}),
        "job": lambda: raw_redis.hset(k.jobs, delivery.id, garbage),
        "delivery-field": lambda: raw_redis.hset(k.delivery(delivery.id), "n", garbage),
        "stream": lambda: raw_redis.xadd(k.stream(victim.id), {"body": garbage}),
        "rate": lambda: raw_redis.hset(k.rate_limit(victim.id), "tat", garbage),
    }
    target[kind]()
    raw_redis.incr(k.endpoints_version)
    raw_redis.zadd(k.due, {delivery.id: 0})  # the victim's delivery comes due again with the garbage in place
    _healthy_still_served(dsp, runtime, healthy, pump)
