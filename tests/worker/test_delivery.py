"""Fan-out and delivery run in-process against a real Redis and real HTTP receivers."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from dispatcher import Dispatcher, InvalidState
from dispatcher.settings import Settings
from dispatcher.worker.fanout import run_fanout
from dispatcher.worker.run import run_deliver
from dispatcher.worker.runtime import Runtime

pytestmark = pytest.mark.every_engine  # each test runs once per HTTP engine

if TYPE_CHECKING:
    from tests.conftest import Receiver


def test_fanout_only_to_matching_endpoints(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    receivers = {pattern: receiver_factory() for pattern in ("*", "user.*", "user.created", "order.*", "user.deleted")}
    for pattern, rec in receivers.items():
        dsp.subscribe(rec.url, [pattern])
    eid = dsp.enqueue("user.created", {"id": 7})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"] * 3)
    got = {p: r.count() for p, r in receivers.items()}
    assert got == {"*": 1, "user.*": 1, "user.created": 1, "order.*": 0, "user.deleted": 0}
    body = json.loads(receivers["*"].requests[0].body)
    assert set(body) == {"id", "type", "timestamp", "data"}
    assert body["id"] == eid and body["type"] == "user.created" and body["data"] == {"id": 7}


def test_deliveries_verify_with_standardwebhooks(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any]
) -> None:
    ep = dsp.subscribe(receiver.url, ["*"])
    ids = dsp.enqueue_many([("t.x", {"i": i, "s": "ünïcode"}) for i in range(20)])
    pump(runtime, lambda: receiver.count() >= 20)
    wh = Webhook(ep.secret)
    for req in receiver.requests:
        payload = wh.verify(req.body, req.headers)
        assert req.headers["webhook-id"] == payload["id"]
        assert req.headers["webhook-signature"].startswith("v1,")
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(ids)


def test_500_twice_then_200_keeps_webhook_id(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (500, {}, b"boom") if n <= 2 else (200, {}, b"fine"))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert [r.headers["webhook-id"] for r in rec.requests] == [eid] * 3
    (d,) = dsp.deliveries(eid)
    assert [a.status for a in d.attempts] == [500, 500, 200]
    assert [a.n for a in d.attempts] == [1, 2, 3]
    assert d.attempts[0].response == "boom" and d.attempts[2].response == "fine"
    gaps = [rec.requests[i + 1].at - rec.requests[i].at for i in range(2)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38  # schedule 0.2 s, 0.4 s


def test_exhausted_goes_dead_then_replay_delivers(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    healthy = {"on": False}
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if healthy["on"] else (503, {}, b"down"))
    ep = dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["dead"])
    assert rec.count() == 4  # first attempt + 3 retries
    (d,) = dsp.deliveries(eid)
    assert [x.id for x in dsp.endpoint_deliveries(ep.id, state="dead")] == [d.id]
    healthy["on"] = True
    assert dsp.replay(d.id) == 1
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    (d,) = dsp.deliveries(eid)
    assert [a.status for a in d.attempts] == [503, 503, 503, 503, 200]
    assert dsp.endpoint_deliveries(ep.id, state="dead") == []
    with pytest.raises(InvalidState):
        dsp.replay(d.id)


def test_bulk_replay_per_endpoint(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    healthy = {"on": False}
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"") if healthy["on"] else (500, {}, b""))
    ep = dsp.update_endpoint(dsp.subscribe(rec.url, ["*"]).id, retry_schedule=[])
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(5)])
    pump(runtime, lambda: len(dsp.endpoint_deliveries(ep.id, state="dead")) == 5)
    healthy["on"] = True
    assert dsp.records.replay_endpoint(ep.id) == 5
    pump(runtime, lambda: all(states(dsp, i) == ["delivered"] for i in ids))


def test_410_disables_endpoint(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (410, {}, b"gone"))
    ep = dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["dead"])
    assert rec.count() == 1
    endpoint = dsp.get_endpoint(ep.id)
    assert endpoint.enabled is False and "410" in (endpoint.disabled_reason or "")
    later = dsp.enqueue("a.b", {})
    run_fanout(runtime)
    assert dsp.deliveries(later) == []  # disabled endpoints get no new deliveries
    dsp.enable_endpoint(ep.id)
    assert dsp.get_endpoint(ep.id).disabled_reason is None


def test_retry_after_pushes_later(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (503, {"Retry-After": "1"}, b"") if n == 1 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    gap = rec.requests[1].at - rec.requests[0].at
    assert gap >= 0.95  # the schedule said 0.2 s; Retry-After said 1 s


def test_retry_after_http_date_and_cap(
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    settings = settings_for(retry_after_max_s=0.5)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    far = email.utils.formatdate(time.time() + 3600, usegmt=True)
    rec = receiver_factory(reply=lambda n, r: (429, {"Retry-After": far}, b"") if n == 1 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(rt, lambda: states(dsp, eid) == ["delivered"])
    gap = rec.requests[1].at - rec.requests[0].at
    assert 0.45 <= gap < 3  # capped at retry_after_max_s, not an hour
    rt.close()
    dsp.close()


def test_retry_after_never_pulls_earlier(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    dsp_settings: Settings = dsp.settings
    assert dsp_settings.retry_schedule[0] == 0.2
    rec = receiver_factory(reply=lambda n, r: (503, {"Retry-After": "0"}, b"") if n == 1 else (200, {}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert rec.requests[1].at - rec.requests[0].at >= 0.18


def test_redirect_is_a_failure(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    target = receiver_factory()
    rec = receiver_factory(reply=lambda n, r: (302, {"Location": target.url}, b""))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["dead"])
    assert target.count() == 0
    assert {a.status for a in dsp.deliveries(eid)[0].attempts} == {302}


def test_timeout_and_connection_errors_are_retried(
    settings_for: Callable[..., Settings],
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    settings = settings_for(timeout_s=0.3, retry_schedule=(0.1,))
    dsp, rt = Dispatcher(settings), Runtime(settings)
    slow = receiver_factory(delay_s=1.0)
    dsp.subscribe(slow.url, ["slow"])
    dsp.subscribe("http://127.0.0.1:1/nothing-listens", ["refused"])
    a = dsp.enqueue("slow", {})
    b = dsp.enqueue("refused", {})
    pump(rt, lambda: states(dsp, a) == ["dead"] and states(dsp, b) == ["dead"])
    assert [x.error for x in dsp.deliveries(a)[0].attempts] == ["timeout", "timeout"]
    assert all((x.error or "").startswith("connection error") for x in dsp.deliveries(b)[0].attempts)
    rt.close()
    dsp.close()


def test_response_body_is_capped(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    rec = receiver_factory(reply=lambda n, r: (200, {}, b"x" * 100_000))
    dsp.subscribe(rec.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert len(dsp.deliveries(eid)[0].attempts[0].response) == 1024


def test_batched_endpoint_gets_json_array(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any], states: Callable[..., list[str]]
) -> None:
    ep = dsp.subscribe(receiver.url, ["*"], max_batch=10)
    ids = dsp.enqueue_many([("a.b", {"i": i}) for i in range(25)])
    pump(runtime, lambda: all(states(dsp, i) == ["delivered"] for i in ids))
    assert receiver.count() == 3
    seen = []
    wh = Webhook(ep.secret)
    for req in receiver.requests:
        batch = orjson.loads(req.body)
        assert isinstance(batch, list) and 1 <= len(batch) <= 10
        assert req.headers["webhook-id"].startswith("batch_")
        wh.verify(req.body, req.headers)
        seen.extend(item["id"] for item in batch)
    assert sorted(seen) == sorted(ids)


def test_disabled_endpoint_deliveries_go_dead(
    dsp: Dispatcher, runtime: Runtime, receiver: Receiver, pump: Callable[..., Any], states: Callable[..., list[str]]
) -> None:
    ep = dsp.subscribe(receiver.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    run_fanout(runtime)
    dsp.disable_endpoint(ep.id)
    pump(runtime, lambda: states(dsp, eid) == ["dead"])
    assert receiver.count() == 0
    assert dsp.deliveries(eid)[0].attempts[0].error == "endpoint disabled"


def test_connect_time_check_refuses_private_targets(
    settings_for: Callable[..., Settings],
    receiver: Receiver,
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    """An endpoint saved while private targets were allowed is still refused when they no longer are."""
    dsp = Dispatcher(settings_for())
    dsp.subscribe(receiver.url, ["*"])
    dsp.subscribe(receiver.url.replace("127.0.0.1", "localhost"), ["*"])
    rt = Runtime(settings_for(allow_private_targets=False))
    eid = dsp.enqueue("a.b", {})
    pump(rt, lambda: states(dsp, eid) == ["dead", "dead"])
    assert receiver.count() == 0
    rt.close()
    dsp.close()


def test_lease_expiry_redelivers_claimed_work(
    settings_for: Callable[..., Settings],
    receiver: Receiver,
    states: Callable[..., list[str]],
    wait_until: Callable[..., Any],
) -> None:
    """A worker that claims deliveries and dies: after the lease, another worker delivers them."""
    settings = settings_for(timeout_s=0.2, lease_margin_s=0.3)
    dsp, rt = Dispatcher(settings), Runtime(settings)
    dsp.subscribe(receiver.url, ["*"])
    eid = dsp.enqueue("a.b", {})
    run_fanout(rt)
    from dispatcher.worker.run import DeliveryRun

    assert len(DeliveryRun(rt, 0).claim(10, False)) == 1  # claimed, then "the worker dies"
    run_deliver(rt, budget_s=0.1)
    assert receiver.count() == 0  # still leased
    wait_until(lambda: (run_deliver(rt, budget_s=0.1), receiver.count())[1] == 1, 5)
    assert states(dsp, eid) == ["delivered"]
    rt.close()
    dsp.close()


def test_send_test_reaches_only_that_endpoint(
    dsp: Dispatcher,
    runtime: Runtime,
    receiver_factory: Callable[..., Receiver],
    pump: Callable[..., Any],
    states: Callable[..., list[str]],
) -> None:
    a, b = receiver_factory(), receiver_factory()
    ep_a = dsp.subscribe(a.url, ["order.*"])
    dsp.subscribe(b.url, ["*"])
    eid = dsp.send_test(ep_a.id)
    pump(runtime, lambda: states(dsp, eid) == ["delivered"])
    assert a.count() == 1 and b.count() == 0
    assert orjson.loads(a.requests[0].body)["type"] == "webhook.test"
